"""The numbers the reference report published, as constants, so the app can show them beside ours.

Source: the course project slides "Convolutional Neural Network for Classification CIFAR-10"
(Kelompok 2), summarised in English in the project's seed-report.md. These are *their* numbers,
never recomputed here; the app labels them "report". Accuracies are fractions (0.8725 = 87.25%).
Where the slides contradict themselves, the first value is the one we treat as the claim and the
other is kept in a note.
"""

from __future__ import annotations

SOURCE = "the reference report (course slides, Kelompok 2), summarised in seed-report.md"

# The recipe each model was trained with in the report.
RECIPE = {
    "cnn": "Adam, lr 0.001, batch 32, ReduceLROnPlateau(max, ×0.1, patience 3), 30 epochs, early stop 15",
    "resnet18": "SGD (momentum 0.9, wd 5e-4), lr 0.1, batch 128, CosineAnnealingLR, 75 epochs, early stop 15",
}
EPOCHS = {"cnn": 30, "resnet18": 75}
BEST_EPOCH = {"cnn": None, "resnet18": 75}  # the CNN's best epoch is not stated
# The slides' own words for depth: "shallow (8 conv layer)" for the CNN (it has 3 conv + 2 linear
# layers), "deep (18 layers with residual blocks)" for ResNet18.
DEPTH = {"cnn": "shallow (\"8 conv layer\")", "resnet18": "deep (18 layers, residual blocks)"}
# The CNN tuning grid the report searched; its best cell.
TUNE_GRID = {"lr": (0.001, 0.003), "batch_size": (32, 64, 128)}
TUNE_BEST = {"lr": 0.001, "batch_size": 32, "val_acc": 0.87}

ACCURACY = {
    # train 89.58% in the results table, 89.59% in the comparison table.
    "cnn": {"train": 0.8958, "val": 0.8684, "test": 0.8725},
    # test 94.64% in "Kinerja model", 96.64% in the results table; 94.64% is the claim.
    "resnet18": {"train": 0.9997, "val": 0.9526, "test": 0.9464},
}
ACCURACY_NOTES = {
    "cnn": "the slides give train 89.58% and 89.59% in two tables",
    "resnet18": "the slides give test 94.64% and 96.64% in two tables; 94.64% is taken as the claim",
}

# Macro-averaged test precision / recall / F1 ("Kinerja model" table).
MACRO = {
    "cnn": {"precision": 0.872, "recall": 0.873, "f1": 0.872},
    "resnet18": {"precision": 0.95, "recall": 0.95, "f1": 0.95},
}

# Per-class test precision / recall / F1 of the CustomCNN (its classification report).
CNN_PER_CLASS = {
    "plane": (0.849, 0.903, 0.875),
    "car": (0.947, 0.947, 0.947),
    "bird": (0.841, 0.812, 0.826),
    "cat": (0.762, 0.732, 0.747),
    "deer": (0.846, 0.878, 0.862),
    "dog": (0.810, 0.796, 0.803),
    "frog": (0.892, 0.928, 0.910),
    "horse": (0.925, 0.894, 0.909),
    "ship": (0.928, 0.926, 0.927),
    "truck": (0.923, 0.909, 0.916),
}

# Per-class test accuracy (= recall) of both models ("Akurasi per kelas").
PER_CLASS_ACCURACY = {
    "cnn": {"plane": 0.903, "car": 0.947, "bird": 0.812, "cat": 0.732, "deer": 0.878,
            "dog": 0.796, "frog": 0.928, "horse": 0.894, "ship": 0.926, "truck": 0.909},
    "resnet18": {"plane": 0.957, "car": 0.977, "bird": 0.923, "cat": 0.879, "deer": 0.966,
                 "dog": 0.907, "frog": 0.970, "horse": 0.959, "ship": 0.969, "truck": 0.957},
}

# The Overview page's model table (None = the report does not state it).
OVERVIEW = {
    model: {"parameters": None, "depth": DEPTH[model], "recipe": RECIPE[model],
            "data": "45,000 train / 5,000 val / 10,000 test images", "epochs": EPOCHS[model],
            "best_epoch": BEST_EPOCH[model], "wall time": None, "hardware": None}
    for model in ("cnn", "resnet18")
}
