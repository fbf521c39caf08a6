"""Rank the offline pre-trained models on a folder of your own images, best first.

Your images: one sub-folder per class (the torchvision ImageFolder layout), e.g. pets/cat/*.jpg, pets/dog/*.jpg.
Without --folder, this builds a small such folder from the packaged animal-mnist dataset, so it runs anywhere.

    python examples/rank_image_folder.py --folder path/to/pets
    python examples/rank_image_folder.py                  # demo folder: 3 animal classes x 20 images

Features are extracted once into the cache (MODELRANK_CACHE or ~/.cache/modelrank) and reused by later runs.
The same from the shell:

    modelrank score -d folder:path/to/pets -m efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 --metric logme,leep,nleep
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import modelrank

OFFLINE_MODELS = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2"


def write_demo_folder(root: Path, classes: int, per_class: int) -> Path:
    """``per_class`` PNGs of each of the first ``classes`` animal-mnist classes under root/<class name>/."""
    from modelrank.data import load_dataset

    data = load_dataset("animal-mnist", "train")
    for class_id, name in enumerate(data.class_names[:classes]):
        (root / name).mkdir(parents=True, exist_ok=True)
        indices = (data.targets == class_id).nonzero()[0][:per_class]
        for i in indices:
            data.load(int(i)).save(root / name / f"{i}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="Image folder, one sub-folder per class [default: a demo folder].")
    parser.add_argument("--models", default=OFFLINE_MODELS, help="Comma-separated models (modelrank list models).")
    parser.add_argument("--metrics", default="logme,leep,nleep", help="Comma-separated metrics (modelrank list metrics).")
    parser.add_argument("--per-class", type=int, default=None, help="Use at most N images per class.")
    parser.add_argument("--demo-classes", type=int, default=3)
    parser.add_argument("--demo-per-class", type=int, default=20)
    args = parser.parse_args()

    folder = args.folder or write_demo_folder(Path(tempfile.mkdtemp(prefix="modelrank-folder-")),
                                              args.demo_classes, args.demo_per_class)
    ranking = modelrank.rank(dataset=f"folder:{folder}", models=args.models, metrics=args.metrics,
                             per_class=args.per_class)
    print(f"models on {folder}, best first (rank = mean rank over {args.metrics}):")
    print(ranking.drop(columns="Dataset").to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
