"""An image folder: `SPLIT/<class>/<image>`, the class names its sorted subfolders (torchvision's layout)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from inceptionnet.data.sources.base import FileSource, SourceError


class FolderSource(FileSource):
    """`root/<class>/<image>`: samples sorted by class, then by file name (torchvision's ImageFolder order)."""

    def __init__(self, root: str | Path, *, transform: Callable[[Image.Image], Any] | None = None) -> None:
        super().__init__(transform=transform)
        root = Path(root)
        if not root.is_dir():
            raise SourceError(f"dataset folder {root} does not exist; expected {root}/<class name>/<image files>")
        try:
            classes, index = find_classes(str(root))
            samples = make_dataset(str(root), index, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as err:
            raise SourceError(
                f"dataset folder {root} has no class folders with images ({err}); "
                f"expected {root}/<class name>/<image files> (.jpg, .jpeg, .png, ...)"
            ) from None
        self.origin = str(root)
        self.classes = list(classes)
        self.paths = [Path(path) for path, _ in samples]
        self.targets = [target for _, target in samples]
