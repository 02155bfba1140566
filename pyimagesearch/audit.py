"""Label audit: the images whose given label the out-of-sample predictions dispute.

    python -m pyimagesearch.audit --oof cv/oof.csv --output audit/

OOF is the oof.csv that ``python -m pyimagesearch.crossval`` writes: every image was
classified by the model of the one fold that never trained on it, so a confident
disagreement with its label is evidence about the label, not a memorised answer.
Confident learning (cleanlab's ``find_label_issues``) picks the images whose label is
likely wrong; they are ranked by label quality (the probability the model gave the
given label: lowest first). Any class names work. Written to OUTPUT:

  issues.csv         one row per suspect, most suspicious first: rank, path, file,
                     group (patient, for the malaria set), fold, given_label,
                     suggested_label, label_quality
  per_group.csv      group, images, issues, share (of that group's images);
                     per_patient.csv for the malaria set
  suspects-01.png... the top suspects (--top), 16 per page, most suspicious first:
                     each image as it is, with its rank, given label, the model's label
                     and confidence, group and fold, and beside it the same image under
                     the Grad-CAM heat of the fold model that judged it (red: where the
                     evidence for the suggested label lies)

The tables are written first: if the montages cannot be drawn, that is one warning line
and the tables stay. How a reviewer uses it: open the montages beside issues.csv (same
order), look at each image, and write the label you see in a column of your own (keep,
relabel, or unsure); ask an expert (for the malaria cells, a microscopist) for the
unsure ones. A group with a large share in per_group.csv points at a batch (a patient's
slide) labelled as a whole. Nothing here edits a label: ``save_model.py --exclude``
trains without listed files, and accuracy must still be judged with the original labels.
See docs/audit.md.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyimagesearch import options
from pyimagesearch.core import report, safety
from pyimagesearch.core.errors import UserError, run_command, start_tensorflow

REQUIRED = ("path", "file", "fold", "label", "predicted")
# The group column: "patient" in the malaria set's oof.csv, "group" for any other.
GROUP_COLUMNS = ("patient", "group")
MARKER = "AUDIT.txt"
OUTPUT_NAMES = ("issues.csv", "per_patient.csv", "per_group.csv")
# The malaria set's columns; any other set has "group" in place of "patient".
ISSUE_FIELDS = ["rank", "path", "file", "patient", "fold", "given_label", "suggested_label",
                "label_quality"]  # fmt: skip
# CSV probabilities carry six decimals; a row must still sum to one within this.
SUM_TOLERANCE = 1e-3


@dataclass
class OutOfFold:
    """oof.csv, checked: rows as read, class names, and the arrays cleanlab needs."""

    rows: list[dict[str, str]]
    class_names: list[str]
    labels: np.ndarray  # index of each row's given label in class_names
    probabilities: np.ndarray  # rows x classes, out-of-sample
    word: str = "patient"  # what a group is called: its column in oof.csv


def read_oof(path: str | Path) -> OutOfFold:
    """Read and check oof.csv; any defect is a UserError naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--oof '{path}' does not exist")
    if not safety.is_regular_file(path):
        raise UserError(f"--oof '{path}' is not a regular file")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"--oof '{path}' is not a readable CSV file: {error}") from None
    missing = [name for name in REQUIRED if name not in header]
    word = next((name for name in GROUP_COLUMNS if name in header), None)
    if word is None:
        missing.append("patient or group")
    class_names = [name[len("prob_") :] for name in header if name.startswith("prob_")]
    if missing or len(class_names) < 2:
        raise UserError(
            f"--oof '{path}' is not an oof.csv from pyimagesearch.crossval: "
            + (f"no column {', '.join(missing)}" if missing else "fewer than two prob_ columns")
        )
    if class_names != sorted(class_names):
        raise UserError(f"--oof '{path}': prob_ columns are not in sorted class order")
    if not rows:
        raise UserError(f"--oof '{path}' has a header but no rows")
    labels, probabilities = [], []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        where = f"--oof '{path}' line {line}"
        if None in row or any(row[name] is None for name in header):
            raise UserError(f"{where}: expected {len(header)} fields")
        if row["label"] not in class_names:
            raise UserError(f"{where}: label '{row['label']}' is not one of {class_names}")
        try:
            fold = int(row["fold"])
        except ValueError:
            fold = 0
        if fold < 1 or not row["fold"].strip().isascii():
            raise UserError(f"{where}: fold '{row['fold']}' is not a positive integer")
        if row["path"] in seen:
            raise UserError(f"{where}: '{row['path']}' is listed twice (line {seen[row['path']]})")
        seen[row["path"]] = line
        row["group"] = row[word]
        try:
            probs = [float(row[f"prob_{name}"]) for name in class_names]
        except ValueError:
            raise UserError(f"{where}: a probability is not a number") from None
        if not all(math.isfinite(p) and 0 <= p <= 1 for p in probs):
            raise UserError(f"{where}: probabilities must lie in [0, 1]")
        if abs(sum(probs) - 1) > SUM_TOLERANCE:
            raise UserError(f"{where}: probabilities sum to {sum(probs):.4f}, not 1")
        labels.append(class_names.index(row["label"]))
        probabilities.append(probs)
    absent = set(class_names) - {row["label"] for row in rows}
    if absent:
        raise UserError(f"--oof '{path}': no image is labelled {', '.join(sorted(absent))}")
    return OutOfFold(
        rows, class_names, np.asarray(labels), np.asarray(probabilities, dtype="float64"), word
    )


# Below this out-of-sample accuracy the fold models' own mistakes are as many as the
# suspects an audit lists (three-epoch folds at 0.65 flagged 237 of 1,200 correctly
# labelled images, issue 40): the list is then mostly the models' errors.
WEAK_ACCURACY = 0.90


def weak_models_caveat(oof: OutOfFold) -> str | None:
    """A caveat when the fold models are too weak for their disagreements to say much
    about the labels: a fold that has not learnt, or out-of-sample accuracy below
    WEAK_ACCURACY. None when the models are good enough to audit with."""
    from pyimagesearch.core.evaluation import learning_check

    predicted = oof.probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == oof.labels))
    folds = np.asarray([int(r["fold"]) for r in oof.rows])
    stuck = [
        fold
        for fold in sorted(set(folds.tolist()))
        if not learning_check(oof.labels[folds == fold], predicted[folds == fold],
                              oof.class_names)["learnt"]
    ]  # fmt: skip
    if accuracy >= WEAK_ACCURACY and not stuck:
        return None
    return (
        f"the fold models are weak (out-of-sample accuracy {accuracy:.3f}"
        + (f"; fold(s) {', '.join(map(str, stuck))} did not learn" if stuck else "")
        + "): most suspects below are likely the models' own mistakes, not wrong labels. "
        "Treat the list as images to look at, and audit again with a stronger recipe "
        f"(out-of-sample accuracy {WEAK_ACCURACY:.2f} or more)"
    )


def find_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of likely label errors, most suspicious first; label quality of every row)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    ranked = find_label_issues(
        labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    return np.asarray(ranked, dtype="int64"), quality


def issue_rows(oof: OutOfFold, ranked: np.ndarray, quality: np.ndarray) -> list[dict]:
    rows = []
    for rank, index in enumerate(ranked, start=1):
        row = oof.rows[index]
        rows.append(
            {
                "rank": rank,
                "path": row["path"],
                "file": row["file"],
                oof.word: row["group"],
                "fold": row["fold"],
                "given_label": row["label"],
                "suggested_label": oof.class_names[int(oof.probabilities[index].argmax())],
                "label_quality": f"{quality[index]:.6f}",
            }
        )
    return rows


def group_rows(oof: OutOfFold, ranked: np.ndarray) -> list[dict]:
    """Images and issues per group (patient), those with most issues (then share) first."""
    images = Counter(row["group"] for row in oof.rows)
    issues = Counter(oof.rows[i]["group"] for i in ranked)
    table = [
        {oof.word: g, "images": n, "issues": issues[g], "share": f"{issues[g] / n:.4f}"}
        for g, n in images.items()
    ]
    return sorted(table, key=lambda r: (-r["issues"], -float(r["share"]), r[oof.word]))


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(safety.csv_row(fields))
        writer.writerows(safety.csv_row(row.get(field, "") for field in fields) for row in rows)


def resolve_image(path: str, images: Path | None) -> Path | None:
    """The image file a row names: its path as written, else under --images by class folder."""
    candidates = [Path(path)]
    if images is not None:
        candidates += [images / Path(path).parent.name / Path(path).name, images / Path(path).name]
    return next((c for c in candidates if safety.is_regular_file(c)), None)


def fold_heatmaps(
    folder: Path,
    suspects: list[dict],
    files: dict[int, Path],
    class_names: list[str],
    max_pixels: int,
) -> dict[int, np.ndarray]:
    """Grad-CAM of each suspect (keyed by rank) from the model of the fold that held it out,
    explaining the suggested label. Folds whose model is missing or unusable are named."""
    from pyimagesearch.inference.gradcam import iter_heatmaps
    from pyimagesearch.training.serialization import load_model

    found: dict[int, np.ndarray] = {}
    for fold in sorted({int(r["fold"]) for r in suspects}):
        model_path = folder / f"fold-{fold}" / "model.keras"
        members = [r for r in suspects if int(r["fold"]) == fold and r["rank"] in files]
        if not members:
            continue
        if not model_path.is_file():
            report.warning(
                f"'{model_path}' not found: fold {fold}'s {len(members)} suspect(s) "
                "are drawn without Grad-CAM"
            )
            continue
        try:
            model, metadata = load_model(model_path)
        except UserError as error:
            report.warning(f"no Grad-CAM for fold {fold}: {error}")
            continue
        if metadata["class_names"] != class_names:
            report.warning(
                f"no Grad-CAM for fold {fold}: '{model_path}' has classes "
                f"{metadata['class_names']}, oof.csv {class_names}"
            )
            continue
        report.info(f"Grad-CAM of {len(members)} suspect(s) with fold {fold}'s model...")
        paths = [str(files[r["rank"]]) for r in members]
        chosen = [class_names.index(r["suggested_label"]) for r in members]
        recipe = metadata["preprocessing"]
        for index, heatmap in iter_heatmaps(model, paths, recipe, chosen, max_pixels=max_pixels):
            found[members[index]["rank"]] = heatmap
    return found


def suspect_tile(
    row: dict,
    path: Path,
    heatmap: np.ndarray | None,
    confidence: float,
    paired: bool,
    class_names: list[str],
    max_pixels: int | None = None,
):
    """One montage tile: the cell, rank and given label above, the model's label and
    confidence below it (in the class's palette colour; CLASS_NAMES is the model's class
    order), patient and fold at the bottom, each line on a dark box; with a HEATMAP, the
    same cell with its Grad-CAM beside it (the heat hides the stain it points at). PAIRED:
    the page has heat, so a cell without it gets an empty place, for tiles of one size."""
    import numpy as np

    from pyimagesearch.core.palette import WRONG, bgr, colour_for
    from pyimagesearch.inference.montage import cell_tile, draw_labels

    tile = cell_tile(str(path), None, max_pixels)
    suggested = row["suggested_label"]
    given = f"{row['rank']}. is {row['given_label']}"
    model = f"{suggested} {confidence:.0%}"
    draw_labels(
        tile, [(given, bgr(WRONG), 0.4, 1), (model, colour_for(suggested, class_names), 0.4, 1)]
    )
    draw_labels(tile, [(f"{row['patient']} fold {row['fold']}", bgr("#ffffff"), 0.4, 1)], True)
    if not paired:
        return tile
    if heatmap is None:
        return np.hstack([tile, np.zeros_like(tile)])
    return np.hstack([tile, cell_tile(str(path), heatmap, max_pixels)])


def draw_suspects(
    args: argparse.Namespace, oof: OutOfFold, suspects: list[dict], ranked: np.ndarray,
    folder: Path,
) -> tuple[int, int]:  # fmt: skip
    """suspects-NN.png in FOLDER: (suspects drawn, pages). Images that cannot be found are
    named and left out; Grad-CAM comes from each fold's model beside oof.csv."""
    import cv2

    from pyimagesearch.inference.montage import build_pages

    images = Path(args.images) if args.images else None
    files = {r["rank"]: resolve_image(r["path"], images) for r in suspects}
    missing = [r["path"] for r in suspects if files[r["rank"]] is None]
    for path in missing[:10]:
        report.warning(f"image '{path}' not found; left out of the montages")
    if missing:
        report.warning(f"{len(missing)} suspect image(s) not found (see --images)")
    files = {rank: path for rank, path in files.items() if path is not None}
    if not files:
        return 0, 0
    heat = fold_heatmaps(Path(args.oof).parent, suspects, files, oof.class_names, args.max_pixels)
    tiles = []
    for row, index in zip(suspects, ranked[: len(suspects)], strict=True):
        if row["rank"] in files:
            confidence = float(oof.probabilities[index].max())
            tiles.append(
                suspect_tile(
                    {**row, "patient": row[oof.word]}, files[row["rank"]], heat.get(row["rank"]),
                    confidence, bool(heat), oof.class_names, args.max_pixels,
                )
            )  # fmt: skip
    pages = build_pages(tiles)
    for number, page in enumerate(pages, start=1):
        if not cv2.imwrite(str(folder / f"suspects-{number:02d}.png"), page):
            raise OSError("OpenCV could not write the montage")
    return len(tiles), len(pages)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = options.command_parser(__doc__, "pyimagesearch.audit")
    parser.add_argument(
        "--oof", required=True, help="oof.csv written by python -m pyimagesearch.crossval"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="folder to write (must not exist, or be empty)"
    )
    parser.add_argument(
        "--top",
        type=options.count,
        default=32,
        help="suspects drawn in the montages, 16 per page (default: 32; 0: no montage). "
        "Grad-CAM uses fold-K/model.keras beside oof.csv",
    )
    parser.add_argument(
        "--images",
        help="folder holding the class folders, for when oof.csv's paths do not resolve "
        "from the current folder (e.g. it was made on another machine)",
    )
    options.add_overwrite(parser, "OUTPUT if it is an earlier audit")
    options.add_max_pixels(parser)
    options.add_debug(parser)
    args = parser.parse_args(argv)
    return args


def owned(name: str) -> bool:
    """The names an audit writes (what --overwrite may replace)."""
    return name in OUTPUT_NAMES or (name.startswith("suspects-") and name.endswith(".png"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    safety.check_paths({"--output": output}, {"--oof": args.oof, "--images": args.images})
    if output.exists() and not output.is_dir():
        raise UserError(f"--output '{output}' is a file; give a folder name")
    safety.check_own_folder(output, "--output", MARKER, owned, args.overwrite)

    report.info(f"reading '{args.oof}'...")
    oof = read_oof(args.oof)
    word = oof.word
    report.info(
        f"{len(oof.rows)} images, {len({r['group'] for r in oof.rows})} {word}s, "
        f"classes {oof.class_names}"
    )
    caveat = weak_models_caveat(oof)
    if caveat:
        report.warning(caveat)
    start_tensorflow(args.debug)  # before cleanlab, which may import it, mutes its start-up log
    report.info("finding label issues (cleanlab, confident learning)...")
    ranked, quality = find_issues(oof.labels, oof.probabilities)
    issues = issue_rows(oof, ranked, quality)
    groups = group_rows(oof, ranked)
    per_group = f"per_{word}.csv"

    with safety.staged_folder(output) as staging:
        # The tables first: a montage that cannot be drawn must not cost the audit itself.
        write_csv(
            staging / "issues.csv", issues, [word if f == "patient" else f for f in ISSUE_FIELDS]
        )
        write_csv(staging / per_group, groups, [word, "images", "issues", "share"])
        (staging / MARKER).write_text(
            (f"CAVEAT: {caveat}.\n\n" if caveat else "")
            + "Written by python -m pyimagesearch.audit from "
            f"'{args.oof}'; --overwrite may replace this folder.\n"
            "issues.csv: suspected label errors, most suspicious first; suspects-NN.png show "
            "them in the same order, 16 per page.\n"
        )
        try:
            drawn, pages = draw_suspects(args, oof, issues[: args.top], ranked, staging)
        except Exception as error:  # any failure to draw leaves the tables, said in one line
            if args.debug:
                raise
            report.warning(f"the suspect montages were not drawn: {error}")
            drawn, pages = 0, 0
    share = len(issues) / len(oof.rows)
    report.info(
        f"{len(issues)} of {len(oof.rows)} images ({share:.2%}) look mislabelled"
        + (" to weak models (see the warning above)" if caveat else "")
        + f"; written to '{output / 'issues.csv'}'"
    )
    worst = [g for g in groups if g["issues"]][:5]
    if worst:
        listed = ", ".join(f"{g[word]} ({g['issues']} of {g['images']})" for g in worst)
        report.info(f"{word}s with most issues: {listed}")
    report.info(f"per-{word} counts written to '{output / per_group}'")
    if pages:
        report.info(
            f"{drawn} suspects drawn on {pages} montage page(s) '{output / 'suspects-01.png'}'..."
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
