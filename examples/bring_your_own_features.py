"""Score features computed by any framework (PyTorch, JAX, TensorFlow, scikit-learn ...): save them as .npz, rank.

One .npz per model, with the arrays
    features     (n, d) float    penultimate-layer features of the n target samples
    labels       (n,)   int      class id of each sample (float targets for regression)
    source_probs (n, k) float    optional: softmax of the model's own pre-training head (LEEP, NCE, PACTran, OTCE)
    class_names  (C,)   str      optional: name of each class id (EMMS embeds them as text)

Here three "models" are stand-ins built with numpy/scikit-learn on the digits images (raw pixels, a PCA and a
random projection), so the script runs anywhere; replace `stand_in_features` with your own extractor. With the
class names in the files, `--metrics logme,emms` also runs EMMS (it needs `pip install 'modelrank[text]'`).

    python examples/bring_your_own_features.py --out-dir my_features

The same from the shell, on the files it writes:

    modelrank score --features my_features/pixels.npz --features my_features/pca8.npz \
        --features my_features/random4.npz --dataset-name digits --metric logme,hscore,leep --out scores.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import modelrank


def stand_in_features(n_samples: int) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """{model name: (n, d) features}, labels and class names of the first ``n_samples`` scikit-learn digits."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    digits = load_digits()
    pixels, labels = digits.data[:n_samples], digits.target[:n_samples]
    random_projection = np.random.default_rng(0).normal(size=(pixels.shape[1], 4))
    features = {"pixels": pixels, "pca8": PCA(8, random_state=0).fit_transform(pixels), "random4": pixels @ random_projection}
    return features, labels, [f"digit {d}" for d in digits.target_names]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, help="Where to write the .npz files [default: a temporary folder].")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--metrics", default="logme,hscore,leep")
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="modelrank-features-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    features, labels, class_names = stand_in_features(args.samples)
    paths = []
    for name, x in features.items():
        # A stand-in for a source head: a fixed random 20-way classifier on the features.
        head = np.random.default_rng(1).normal(size=(x.shape[1], 20)) / np.sqrt(x.shape[1])
        path = out_dir / f"{name}.npz"
        np.savez(path, features=x, labels=labels, source_probs=softmax(x @ head / x.std()),
                 class_names=np.array(class_names))
        paths.append(path)

    # In Python: every file becomes one row (model = file stem).
    scores = modelrank.score(paths, args.metrics, dataset="digits")
    print(scores[["Model", *args.metrics.split(",")]].to_string(index=False))

    # From the shell: the same files, a ranking table per dataset, and the scores as CSV.
    csv = out_dir / "scores.csv"
    command = [sys.executable, "-m", "modelrank", "score", *[arg for p in paths for arg in ("--features", str(p))],
               "--dataset-name", "digits", "--metric", args.metrics, "--out", str(csv)]
    subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
