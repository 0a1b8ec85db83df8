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
mean and largest logit difference. `speed` times fp32 and the 8-bit and 7-bit files on each engine in
interleaved rounds (also Inception-v4 at full size, random weights: `prepare-v4`); `ceiling` the fp32 and
bf16 matrix products. The steps (run from the project folder; each adds its rows to
benchmarks/results/int8-cpu-kinds.json, replacing those of the same setting):

    python benchmarks/int8_cpu_kinds.py prepare --cifar10 ../shared/data/cifar10 --out-dir runs/int8-cpu
    python benchmarks/int8_cpu_kinds.py measure --out-dir runs/int8-cpu --kind "native"
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/int8_cpu_kinds.py measure --out-dir runs/int8-cpu --kind "simulated AVX2"
    qemu-x86_64 -cpu Haswell .venv/bin/python benchmarks/int8_cpu_kinds.py measure --out-dir runs/int8-cpu \\
        --kind "emulated Haswell" --networks demo cifar14 --images 1000   # and: --networks cifar299 --images 300
    python benchmarks/int8_cpu_kinds.py prepare-v4 --imagenet ../shared/data/imagenet-sample --out-dir runs/int8-cpu
    python benchmarks/int8_cpu_kinds.py speed --out-dir runs/int8-cpu --kind "native" --networks cifar299 v4
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/int8_cpu_kinds.py speed --out-dir runs/int8-cpu --kind "simulated AVX2" \\
        --networks cifar299 v4
    python benchmarks/int8_cpu_kinds.py ceiling --kind "native"
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/int8_cpu_kinds.py ceiling --kind "simulated AVX2"
    python benchmarks/int8_cpu_kinds.py table

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

from inceptionnet import create_model
from inceptionnet.cpu import cpu_features
from inceptionnet.data import eval_transform, read_image
from inceptionnet.export.formats import export_model
from inceptionnet.export.runtimes import ENGINES, engine_installed, onnx_runner
from inceptionnet.factory import load_model
from inceptionnet.perf.measure import CPU_CEILING_N, ceiling_size, interleaved, matmul_ceiling_tflops, timed
from inceptionnet.quantization.int8folder import MODEL_FILE
from inceptionnet.quantization.quantize import load_quantized, quantize_model
from inceptionnet.training.loop import train
from inceptionnet.training.presets import preset
from inceptionnet.weights import save_model_folder

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "int8-cpu-kinds.json"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HELD_OUT = range(100, 300)  # CIFAR-10 test images of each class: the first 100 are the runs' validation
NETWORKS = {
    "demo": "the demo: Inception-ResNet-v1 at 1/4 width, 75 px, 10 epochs on the built-in 3,000 images",
    "cifar14": "the same network, 14 epochs on 25,000 CIFAR-10 images, cosine schedule",
    "cifar299": "the same network at 299 px, 4 epochs on 5,000 CIFAR-10 images, cosine schedule",
}
TARGETS = ("vnni", "any")
# The speed table shows the 299 px networks: at 75 px a step takes 1-10 ms and the rounds' spread swamps the ratios.
SPEED_SHOWN = ("cifar299", "v4")


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


def prepare_v4(imagenet: Path, out: Path) -> None:
    """Inception-v4 at full size, random weights (speed does not depend on them), quantized for both targets on
    32 ImageNet images with nearest rounding and no minimum agreement (random weights agree by chance only)."""
    torch.manual_seed(0)
    model = create_model("inception_v4").eval()
    save_model_folder(out / "v4", model)
    images = sorted(imagenet.glob("*.JPEG"))[::31][:32]
    for target in TARGETS:
        if not (out / f"v4-{target}" / MODEL_FILE).is_file():
            quantize_model(model, images, out / f"v4-{target}", images=32, rounding="nearest", target_cpu=target,
                           min_agreement=0)  # fmt: skip
    transform = eval_transform(model.preprocessing)
    np.save(out / "v4-inputs.npy", torch.stack([transform(read_image(p)) for p in images[:16]]).numpy())


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


def measure(out: Path, kind: str, images: int, networks: list[str]) -> list[dict]:
    """Every int8 file of each network on every engine, as this process's CPU computes it."""
    rows = []
    for key in networks:
        inputs = np.load(out / f"{key}-inputs.npy", mmap_mode="r")[:images]
        fp32 = np.load(out / f"{key}-fp32.npy")[:images]
        truth = labels(len(inputs))
        for engine in _engines():
            files = {
                "8-bit, as written": onnx_runner(out / f"{key}-vnni" / MODEL_FILE, engine, threads=2),
                "8-bit, opened": _network(out / f"{key}-vnni", engine),
                "7-bit": _network(out / f"{key}-any", engine),
            }
            for weights, run in files.items():
                logits = np.concatenate([run(np.array(b)) for b in np.array_split(inputs, max(1, len(inputs) // 16))])
                rows.append(_scores(kind, key, engine, weights, logits, fp32, truth))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def _engines() -> list[str]:
    """The engines installed whose kernels this CPU setting decides: under ONEDNN_MAX_CPU_ISA, OpenVINO only
    (ONNX Runtime has no such switch and would be measured as on the real CPU)."""
    return [e for e in ENGINES if engine_installed(e) and (e == "openvino" or not cpu_features().cap)]


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


def speed(out: Path, kind: str, rounds: int, networks: list[str], batch: int = 16) -> list[dict]:
    """fp32, 8-bit and 7-bit weights on each engine, in interleaved rounds of one batch each; the speed-ups per
    round (`_engines`: under ONEDNN_MAX_CPU_ISA, OpenVINO only)."""
    rows = []
    for key in networks:
        x = np.load(out / f"{key}-inputs.npy", mmap_mode="r")[:batch].copy()
        fp32_file = out / f"{key}-fp32.onnx"
        if not fp32_file.is_file():
            export_model(load_model(str(out / key)), format="onnx", output=fp32_file, dynamic_batch=True)
        for engine in _engines():
            files = {
                "fp32": fp32_file,
                "8-bit": out / f"{key}-vnni" / MODEL_FILE,
                "7-bit": out / f"{key}-any" / MODEL_FILE,
            }
            runners = {k: onnx_runner(f, engine, threads=2) for k, f in files.items()}
            steps = {k: (lambda r=r, x=x: r(x)) for k, r in runners.items()}
            times = interleaved(steps, rounds=rounds, warmup=2, device=torch.device("cpu"), idle_s=0.02)
            rows.append({
                "kind": kind, "cpu": cpu_features().describe(), "network": key, "engine": engine, "batch": batch,
                "rounds": rounds, "images_per_s": {k: batch / statistics.median(t) for k, t in times.items()},
                "speedup": {k: _ratios(times["fp32"], times[k]) for k in ("8-bit", "7-bit")},
                "7bit_vs_8bit": _ratios(times["8-bit"], times["7-bit"]),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _ratios(base: list[float], other: list[float]) -> dict[str, float]:
    """How many times as fast `other` ran as `base`, per round: median and range."""
    ratios = [b / o for b, o in zip(base, other, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def ceiling(kind: str) -> list[dict]:
    """The fp32 and bf16 matrix-multiply speed here (perf.measure, the benchmark's ceiling), and one 2048 product."""
    rows = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        n = ceiling_size(torch.device("cpu"), dtype)
        tflops = matmul_ceiling_tflops(device=torch.device("cpu"), dtype=dtype, n=n)
        a = torch.randn(CPU_CEILING_N, CPU_CEILING_N).to(dtype)
        with torch.inference_mode():
            big = timed(lambda a=a: torch.mm(a, a), torch.device("cpu"))
        rows.append({"kind": kind, "cpu": cpu_features().describe(), "dtype": name, "n": n, "gflops": tflops * 1e3,
                     "seconds_2048": big})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def accuracy_table(results: dict) -> str:
    """The accuracy table of docs/performance.md ("int8 on every CPU"), from the results."""
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
    return "\n".join(lines)


def speed_table(results: dict) -> str:
    """The speed table: fp32 against both int8 files on each engine."""
    lines = [
        "| network | CPU | engine | img/s fp32 / 8-bit / 7-bit | int8 speed-up over fp32: 8-bit, 7-bit | "
        "7-bit / 8-bit speed |",
        "|---|---|---|---|---|---|",
    ]
    for r in (r for r in results.get("speed", []) if r["network"] in SPEED_SHOWN):
        rate, up, same = r["images_per_s"], r["speedup"], r["7bit_vs_8bit"]
        lines.append(
            f"| {r['network']} | {r['kind']} | {r['engine']} | {rate['fp32']:.1f} / {rate['8-bit']:.1f} / "
            f"{rate['7-bit']:.1f} | {_spread(up['8-bit'])}, {_spread(up['7-bit'])} | {_spread(same)} |"
        )
    return "\n".join(lines)


def ceiling_table(results: dict) -> str:
    """The matrix-multiply ceiling of each CPU setting."""
    lines = ["| CPU | dtype | matrix | GFLOP/s | one 2048 x 2048 product |", "|---|---|---|---|---|"]
    for r in results.get("ceiling", []):
        lines.append(f"| {r['kind']} | {r['dtype']} | {r['n']} | {r['gflops']:.0f} | {r['seconds_2048']:.2f} s |")
    return "\n".join(lines)


def table(results: dict) -> str:
    """The three tables, as benchmarks/docs_tables.py writes them into docs/performance.md."""
    return "\n\n".join(f(results) for f in (accuracy_table, speed_table, ceiling_table))


def _spread(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def _append(section: str, rows: list[dict]) -> None:
    """Add `rows` to the results file's `section`, replacing the rows of the same setting measured before."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}

    def same(r: dict) -> tuple:
        return r["kind"], r.get("network"), r.get("engine"), r.get("weights"), r.get("dtype")

    kinds = {same(r) for r in rows}
    kept = [r for r in results.get(section, []) if same(r) not in kinds]
    results[section] = kept + rows
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "prepare-v4", "measure", "speed", "ceiling", "table"])
    parser.add_argument("--cifar10", type=Path, default=Path("../shared/data/cifar10"))
    parser.add_argument("--imagenet", type=Path, default=Path("../shared/data/imagenet-sample"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs/int8-cpu"))
    parser.add_argument("--kind", default="native", help="what to call this CPU setting in the results")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--networks", nargs="+", choices=[*NETWORKS, "v4"], default=list(NETWORKS))
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.cifar10, args.out_dir)
    elif args.step == "prepare-v4":
        prepare_v4(args.imagenet, args.out_dir)
    elif args.step == "measure":
        _append("accuracy", measure(args.out_dir, args.kind, args.images, args.networks))
    elif args.step == "speed":
        _append("speed", speed(args.out_dir, args.kind, args.rounds, args.networks))
    elif args.step == "ceiling":
        _append("ceiling", ceiling(args.kind))
    else:
        print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
