"""Pipeline step "train": fit a diabetes classifier on prep's output, log its quality, save it.

    python train_diabetes.py --training-data DIR

DIR is prep's output folder (every *.csv in it is read; prep writes data.csv), or one CSV file.
Logs `Accuracy`, `AUC` and a ROC curve image (roc_curve.png) through MLflow and saves the model with
joblib to outputs/diabetes_model.pkl under the working directory (Azure ML uploads ./outputs of a
step run; the local runner does the same). A bad input file exits with status 2 and a one-line message.

The model is a DecisionTreeClassifier, as in the lab, with min_samples_leaf=20: the lab's unpruned
tree has pure leaves, so its "probabilities" are all 0 or 1 and its AUC is no better than its
balanced accuracy (about 0.78 on the sample); leaves of 20 give graded probabilities (AUC about 0.9).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

FEATURES = ("Pregnancies", "PlasmaGlucose", "DiastolicBloodPressure", "TricepsThickness",
            "SerumInsulin", "BMI", "DiabetesPedigree", "Age")
LABEL = "Diabetic"
MODEL_PATH = Path("outputs") / "diabetes_model.pkl"
ROC_IMAGE = "roc_curve.png"


class BadInput(Exception):
    """The training data cannot be used; the message says what is wrong and what to do."""


def read_training_data(path: Path) -> pd.DataFrame:
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise BadInput(f"{path} has no .csv file; pass the folder the prep step wrote")
    elif path.is_file():
        files = [path]
    else:
        raise BadInput(f"{path} does not exist; pass the folder the prep step wrote")
    frames = []
    for file in files:
        try:
            frames.append(pd.read_csv(file))
        except pd.errors.EmptyDataError:
            raise BadInput(f"{file} is empty; rerun the prep step") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise BadInput(f"{file} is not a readable CSV file ({type(error).__name__}); rerun the prep step") from None
    data = pd.concat(frames, ignore_index=True)
    missing = [column for column in (*FEATURES, LABEL) if column not in data.columns]
    if missing:
        raise BadInput(f"{path} lacks the column(s) {', '.join(missing)}; "
                       f"expected {', '.join((*FEATURES, LABEL))}")
    data = data[[*FEATURES, LABEL]]
    if data.empty:
        raise BadInput(f"{path} has no data rows; rerun the prep step on data that has some")
    if data.isna().any(axis=None):
        raise BadInput(f"{path} has missing values; run the prep step on it first")
    if not all(pd.api.types.is_numeric_dtype(data[column]) for column in data.columns):
        raise BadInput(f"{path} has non-numeric values; run the prep step on it first")
    if set(data[LABEL].unique()) != {0, 1}:
        raise BadInput(f"{LABEL} must be 0 or 1, with both present (found {sorted(data[LABEL].unique().tolist())}); "
                       "a model needs examples of both classes")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-data", type=Path, required=True, help="the prep step's output folder")
    args = parser.parse_args(argv)

    try:
        data = read_training_data(args.training_data)
    except BadInput as error:
        print(f"train: error: {error}", file=sys.stderr)
        return 2

    import joblib
    import matplotlib
    matplotlib.use("Agg")  # no display on a compute node
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    # Arrays, not a DataFrame, as in the lab: scoring code sends plain lists of the eight features.
    X = data[list(FEATURES)].to_numpy()
    y = data[LABEL].to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.30, random_state=0)
    if len(set(y_test)) < 2 or len(set(y_train)) < 2:
        print(f"train: error: {len(data)} rows are too few to split into train and test sets holding both "
              "classes; give it more data", file=sys.stderr)
        return 2
    model = DecisionTreeClassifier(min_samples_leaf=20, random_state=0).fit(X_train, y_train)

    scores = model.predict_proba(X_test)[:, 1]
    accuracy = float(accuracy_score(y_test, model.predict(X_test)))
    auc = float(roc_auc_score(y_test, scores))
    false_positive_rate, true_positive_rate, _ = roc_curve(y_test, scores)

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([0, 1], [0, 1], "k--", linewidth=1)
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUC {auc:.3f}")
    axes.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    axes.legend(loc="lower right")

    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, MODEL_PATH)

    with mlflow.start_run():
        mlflow.log_metrics({"Accuracy": accuracy, "AUC": auc})
        mlflow.log_figure(figure, ROC_IMAGE)
    plt.close(figure)
    print(f"train: {len(X_train)} training rows, {len(X_test)} test rows; "
          f"Accuracy {accuracy:.4f}, AUC {auc:.4f}; model saved to {MODEL_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
