"""The int8 measurement of docs/performance.md ("int8 on every CPU"): 8-bit and 7-bit weights on each kind of CPU.

Three trained networks (the demo run; the demo's network trained 14 epochs on 25,000 CIFAR-10 images; the
same network at 299 px, 4 epochs on 5,000), each quantized twice with the command's defaults but for the
target CPU: `--target-cpu vnni` (8-bit weights) and `--target-cpu any` (7-bit). Then, on held-out
CIFAR-10 test images (100-299 of each class: neither trained on nor used to pick a checkpoint), each
file on each engine, as the CPU this process runs on computes it:

- "8-bit, as written": the 8-bit file run as it is (what every version before the narrowing did);
- "8-bit, opened": the same folder through load_quantized (narrowed to 7 bits where the CPU lacks VNNI);
- "7-bit": the `--target-cpu any` folder;

each against the fp32 network (computed once, natively, with torch): top-1 accuracy, top-1 agreement,
mean and largest logit difference. `speed` times the 8-bit and 7-bit files of each engine in
interleaved rounds. The steps (run from the project folder; each appends to --results):

    python docs/int8/cpu_kinds.py prepare --cifar10 ../shared/data/cifar10 --out-dir runs/int8-cpu
    python docs/int8/cpu_kinds.py measure --out-dir runs/int8-cpu --kind "native"
    ONEDNN_MAX_CPU_ISA=AVX2 python docs/int8/cpu_kinds.py measure --out-dir runs/int8-cpu --kind "simulated AVX2"
    qemu-x86_64 -cpu Haswell .venv/bin/python docs/int8/cpu_kinds.py measure --out-dir runs/int8-cpu \\
        --kind "emulated Haswell" --images 500
    python docs/int8/cpu_kinds.py speed --out-dir runs/int8-cpu --kind "native"
    ONEDNN_MAX_CPU_ISA=AVX2 python docs/int8/cpu_kinds.py speed --out-dir runs/int8-cpu --kind "simulated AVX2"
    python docs/int8/cpu_kinds.py table

ONEDNN_MAX_CPU_ISA=AVX2 makes OpenVINO (oneDNN) use AVX2 kernels only, as on a CPU without VNNI; ONNX
Runtime has no such switch and still uses VNNI there. Under qemu-user (Debian's qemu-user) with
`-cpu Haswell`, every library sees an AVX2-only CPU in cpuid and dispatches as on one (slowly: hence
fewer images, and no timing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from inceptionnet.cpu import cpu_features
from inceptionnet.data import eval_transform, read_image
from inceptionnet.export.runtimes import ENGINES, engine_installed, onnx_runner
from inceptionnet.factory import load_model
from inceptionnet.perf.measure import interleaved
from inceptionnet.quantization.int8folder import MODEL_FILE
from inceptionnet.quantization.quantize import load_quantized, quantize_model
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset

HERE = Path(__file__).parent
RESULTS = HERE / "cpu-kinds.json"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HELD_OUT = range(100, 300)  # CIFAR-10 test images of each class: the first 100 are the runs' validation
NETWORKS = {
    "demo": "the demo: Inception-ResNet-v1 at 1/4 width, 75 px, 10 epochs on the built-in 3,000 images",
    "cifar14": "the same network, 14 epochs on 25,000 CIFAR-10 images, cosine schedule",
    "cifar299": "the same network at 299 px, 4 epochs on 5,000 CIFAR-10 images, cosine schedule",
}
TARGETS = ("vnni", "any")


def prepare(cifar10: Path, out: Path) -> None:
    """Train the three runs, quantize each for both targets, and cache the held-out inputs and fp32 logits."""
    data = out / "cifar10"
    for split, source in (("train", "train"), ("val", "test")):  # the runs validate on the first 100 test images
        (data / split).mkdir(parents=True, exist_ok=True)
        for name in CLASSES:
            if not (data / split / name).exists():
                (data / split / name).symlink_to((cifar10 / source / name).resolve(), target_is_directory=True)
    cifar = {"data": str(data), "val_per_class": 100, "lr_schedule": "cosine"}
    configs = {
        "demo": preset("demo"),
        "cifar14": preset("demo", **cifar, train_per_class=2500, epochs=14),
        "cifar299": preset("demo", **cifar, train_per_class=500, epochs=4, input_size=299),
    }
    calibration = {"demo": "src/inceptionnet/assets/demo/train"}
    for key, cfg in configs.items():
        run = out / key
        if not (run / "model").is_dir():
            train(dataclasses.replace(cfg, out_dir=str(run)))
        model = load_model(str(run)).eval()
        for target in TARGETS:
            if not (out / f"{key}-{target}" / MODEL_FILE).is_file():
                images = calibration.get(key, str(data / "train"))
                quantize_model(model, images, out / f"{key}-{target}", target_cpu=target)
        if not (out / f"{key}-fp32.npy").is_file():
            inputs = _inputs(cifar10, model, out / f"{key}-inputs.npy")
            with torch.no_grad():
                logits = torch.cat([model(torch.from_numpy(b.copy())) for b in np.array_split(inputs, 40)])
            np.save(out / f"{key}-fp32.npy", logits.numpy())


def _inputs(cifar10: Path, model: torch.nn.Module, path: Path) -> np.ndarray:
    """The held-out images, class by class within each index (the first N are balanced), preprocessed."""
    transform = eval_transform(model.preprocessing)
    files = [cifar10 / "test" / name / f"{i:04d}.jpg" for i in HELD_OUT for name in CLASSES]
    inputs = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(len(files), 3, *[model.preprocessing.input_size] * 2)
    )
    for i, f in enumerate(files):
        inputs[i] = transform(read_image(f)).numpy()
    inputs.flush()
    return np.load(path, mmap_mode="r")


def labels(count: int) -> np.ndarray:
    return np.array([c for _ in HELD_OUT for c in range(len(CLASSES))])[:count]


def measure(out: Path, kind: str, images: int) -> list[dict]:
    """Every int8 file of every network on every engine, as this process's CPU computes it."""
    rows = []
    for key in NETWORKS:
        inputs = np.load(out / f"{key}-inputs.npy", mmap_mode="r")[:images]
        fp32 = np.load(out / f"{key}-fp32.npy")[:images]
        truth = labels(len(inputs))
        for engine in (e for e in ENGINES if engine_installed(e)):
            files = {
                "8-bit, as written": onnx_runner(out / f"{key}-vnni" / MODEL_FILE, engine, threads=2),
                "8-bit, opened": _network(out / f"{key}-vnni", engine),
                "7-bit": _network(out / f"{key}-any", engine),
            }
            for weights, run in files.items():
                logits = np.concatenate(
                    [run(np.ascontiguousarray(b)) for b in np.array_split(inputs, max(1, len(inputs) // 16))]
                )
                rows.append(_scores(kind, key, engine, weights, logits, fp32, truth))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _network(folder: Path, engine: str):
    net = load_quantized(folder, engine=engine, threads=2, log=lambda line: print(f"note: {line}"))
    return lambda x: net(torch.from_numpy(x)).numpy()


def _scores(
    kind: str, key: str, engine: str, weights: str, logits: np.ndarray, fp32: np.ndarray, truth: np.ndarray
) -> dict:
    diff = np.abs(logits - fp32)
    return {
        "kind": kind,
        "cpu": cpu_features().describe(),
        "network": key,
        "engine": engine,
        "weights": weights,
        "images": len(truth),
        "fp32_top1": float((fp32.argmax(1) == truth).mean()),
        "int8_top1": float((logits.argmax(1) == truth).mean()),
        "agreement": float((logits.argmax(1) == fp32.argmax(1)).mean()),
        "mean_logit_diff": float(diff.mean()),
        "max_logit_diff": float(diff.max()),
    }


def speed(out: Path, kind: str, rounds: int, batch: int = 16) -> list[dict]:
    """8-bit against 7-bit weights on each engine: interleaved rounds of one batch each."""
    rows = []
    for key in NETWORKS:
        x = np.load(out / f"{key}-inputs.npy", mmap_mode="r")[:batch].copy()
        for engine in (e for e in ENGINES if engine_installed(e)):
            runners = {
                bits: onnx_runner(out / f"{key}-{target}" / MODEL_FILE, engine, threads=2)
                for bits, target in (("8-bit", "vnni"), ("7-bit", "any"))
            }
            steps = {bits: (lambda r=r, x=x: r(x)) for bits, r in runners.items()}
            times = interleaved(steps, rounds=rounds, warmup=2, device=torch.device("cpu"), idle_s=0.02)
            ratios = [a / b for a, b in zip(times["8-bit"], times["7-bit"], strict=True)]
            rows.append({
                "kind": kind, "cpu": cpu_features().describe(), "network": key, "engine": engine, "batch": batch,
                "images_per_s": {bits: batch / statistics.median(t) for bits, t in times.items()},
                "7bit_speed_vs_8bit": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(results: dict) -> str:
    """The markdown tables of docs/performance.md, from the results file."""
    lines = [
        "| network | CPU | engine | fp32 top-1 (images) | 8-bit as written: top-1 / agreement | 8-bit opened "
        "| 7-bit (`--target-cpu any`) |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r["network"], r["kind"], r["engine"], r["weights"]): r for r in results["accuracy"]}
    for key in NETWORKS:
        for kind in dict.fromkeys(r["kind"] for r in results["accuracy"]):
            for engine in ENGINES:
                cells = [by.get((key, kind, engine, w)) for w in ("8-bit, as written", "8-bit, opened", "7-bit")]
                if None in cells:
                    continue
                fp32 = f"{cells[0]['fp32_top1']:.2%} ({cells[0]['images']})"
                shown = [f"{c['int8_top1']:.2%} / **{c['agreement']:.2%}**" for c in cells]
                lines.append(f"| {key} | {kind} | {engine} | {fp32} | " + " | ".join(shown) + " |")
    lines += [
        "",
        "| network | CPU | engine | img/s 8-bit | img/s 7-bit | 7-bit speed / 8-bit (median, range) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results.get("speed", []):
        s = r["7bit_speed_vs_8bit"]
        rate = r["images_per_s"]
        lines.append(
            f"| {r['network']} | {r['kind']} | {r['engine']} | {rate['8-bit']:.1f} | {rate['7-bit']:.1f} | "
            f"{1 / s['median']:.2f}x ({1 / s['max']:.2f}-{1 / s['min']:.2f}) |"
        )
    return "\n".join(lines)


def _append(section: str, rows: list[dict]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    kinds = {(r["kind"], r["network"], r["engine"], r.get("weights")) for r in rows}
    kept = [
        r for r in results.get(section, []) if (r["kind"], r["network"], r["engine"], r.get("weights")) not in kinds
    ]
    results[section] = kept + rows
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "measure", "speed", "table"])
    parser.add_argument("--cifar10", type=Path, default=Path("../shared/data/cifar10"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/int8-cpu"))
    parser.add_argument("--kind", default="native", help="what to call this CPU setting in the results")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.cifar10, args.out_dir)
    elif args.step == "measure":
        _append("accuracy", measure(args.out_dir, args.kind, args.images))
    elif args.step == "speed":
        _append("speed", speed(args.out_dir, args.kind, args.rounds))
    else:
        print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
