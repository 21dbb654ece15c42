"""What `train` builds from an `ExperimentConfig` by default: the loader, the evaluator, init weights.

Kept apart from the loop so that tests can hand `train` toy parts instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from torch import nn

from streamvis.errors import ConfigError


def build_loader_from_config(
    cfg, *, batch_size: int, rank: int, world_size: int, start_iter: int
) -> Iterator:
    """The resumable training iterator of ``cfg.data`` (`streamvis.data.loader.build_train_loader`)."""
    from streamvis.data.loader import build_train_dataset, build_train_loader

    dataset = build_train_dataset(cfg.data, seed=cfg.seed)
    check_dataset_matches_model(dataset, cfg.model)
    return build_train_loader(
        dataset,
        batch_size=batch_size,
        seed=cfg.seed,
        rank=rank,
        world_size=world_size,
        start_iter=start_iter,
        num_workers=cfg.data.num_workers,
    )


def resolve_model_from_data(cfg):
    """Fill the model fields that the training data determines; returns the updated config.

    ``model.class_names`` / ``model.category_ids``, when unset, become the dataset's categories
    (sorted by id, the class order of the data pipeline), so a trained model writes the dataset's
    category ids and names without the json at hand; then the method's own
    `MethodSpec.fill_from_data` runs (CrossVIS: ``num_identities: 0`` becomes the number of
    identities of the training json, so nothing hard-codes it).
    """
    import dataclasses

    from streamvis.data.sampling import index_videos
    from streamvis.models.build import method_spec

    model_cfg = cfg.model
    if not getattr(cfg.data, "train_json", None):
        return cfg
    index = index_videos(cfg.data.train_json)
    changes = {}
    if model_cfg.class_names is None and len(index.class_names) == model_cfg.num_classes:
        changes["class_names"] = tuple(index.class_names)
    if model_cfg.category_ids is None and len(index.category_ids) == model_cfg.num_classes:
        changes["category_ids"] = tuple(index.category_ids)
    model_cfg = dataclasses.replace(model_cfg, **changes)
    fill = method_spec(model_cfg.method).fill_from_data
    if fill is not None:
        model_cfg = fill(model_cfg, index)
    return dataclasses.replace(cfg, model=model_cfg)


def check_dataset_matches_model(dataset, model_cfg) -> None:
    """The classifier sizes of the model must cover the dataset's classes and identities."""
    num_classes = getattr(model_cfg, "num_classes", None)
    if num_classes is not None and dataset.num_classes != num_classes:
        raise ConfigError(
            f"{dataset.annotation_json} has {dataset.num_classes} categories but model.num_classes is "
            f"{num_classes}; set --set model.num_classes={dataset.num_classes}"
        )
    num_identities = getattr(model_cfg, "num_identities", None)
    if num_identities is not None and dataset.num_identities > num_identities:
        raise ConfigError(
            f"{dataset.annotation_json} has {dataset.num_identities} instance identities but "
            f"model.num_identities is {num_identities}; "
            f"set --set model.num_identities={dataset.num_identities}"
        )


def build_evaluate_fn(cfg) -> Callable[[nn.Module], dict[str, float]] | None:
    """model -> AP/AR on the valid split of ``cfg.data`` (None when no valid split is configured)."""
    valid_json = getattr(cfg.data, "valid_json", None)
    valid_images = getattr(cfg.data, "valid_images", None)
    if not valid_json or not valid_images:
        return None
    for path in (valid_json, valid_images):
        if not Path(path).exists():
            raise ConfigError(f"{path}: the valid split of data.valid_json/data.valid_images does not exist")

    def evaluate_fn(model: nn.Module) -> dict[str, float]:
        from streamvis.engine.predict import predict_dataset
        from streamvis.evaluation import evaluate

        results = predict_dataset(model, valid_json, valid_images, progress=False)
        return dict(evaluate(valid_json, results).stats_named)

    return evaluate_fn


def load_init_weights(model: nn.Module, path: str) -> None:
    """Initialise `model` from ``train.init_weights`` before training.

    Two kinds of file are accepted:

    - a streamvis training checkpoint or weights file (a dict with ``"model"`` and ``"config"``,
      e.g. ``outputs/run/model_final.pth`` or ``streamvis export``'s output): the WHOLE model is
      initialised from it (fine-tuning). Tensors whose shape differs (a different number of
      classes or identities) keep their init, with a warning naming them.
    - an ImageNet backbone (detectron2 ``.pkl`` or torchvision ``.pth``): only ``model.backbone``.
      torchvision weights need ``model.stride_in_1x1: false`` (the stride sits in the 3x3 conv).

    Raises:
        ConfigError: the file does not exist.
        DataFormatError: a streamvis file shares no tensor with the model or lacks backbone
            tensors the model has (another architecture), or the backbone file does not fit.
    """
    if not Path(path).is_file():
        raise ConfigError(f"{path}: train.init_weights file not found")
    state = _read_streamvis_weights(path)
    if state is not None:
        _check_same_method(model, path)
        load_full_model_weights(model, state, path)
        return
    from streamvis.models.imagenet_weights import load_imagenet_backbone

    load_imagenet_backbone(model.backbone, path)


def _check_same_method(model: nn.Module, path: str) -> None:
    """A streamvis file of another method (e.g. PCAN weights for a CrossVIS config) is refused."""
    from streamvis.errors import DataFormatError
    from streamvis.models.build import upgrade_model_dict
    from streamvis.models.weights import read_file

    stored = upgrade_model_dict(read_file(path)["config"])["method"]
    wanted = getattr(getattr(model, "config", None), "method", None)
    if wanted is not None and stored != wanted:
        raise DataFormatError(f"train.init_weights holds a {stored!r} model but this config builds a "
                              f"{wanted!r} model (model.method); give weights of the same method",
                              path=path, field="method")


def _read_streamvis_weights(path: str):
    """The ``"model"`` state dict of a streamvis checkpoint/weights file, or None for other files."""
    from streamvis.errors import DataFormatError
    from streamvis.models.weights import NewerFormatError, is_streamvis_file, read_file

    if str(path).endswith(".pkl"):
        return None
    try:
        data = read_file(path)
    except NewerFormatError:
        raise
    except DataFormatError:
        return None  # not ours: the backbone reader reports what is wrong with it
    return data["model"] if is_streamvis_file(data) else None


def load_full_model_weights(model: nn.Module, state: dict, path=None) -> None:
    """Copy every tensor of `state` that fits `model` (same name and shape) into it.

    Tensors of another shape, and model tensors the file lacks outside the backbone, keep their
    init and are named in one warning; a file that shares no tensor with the model, or lacks
    backbone tensors, is another architecture and raises `DataFormatError`.
    """
    import warnings

    from streamvis.errors import DataFormatError
    from streamvis.models.weights import check_tensors

    check_tensors(state, path)
    expected = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    if not fitting:
        raise DataFormatError("train.init_weights: no tensor of this file fits the model "
                              "(another architecture?)", path=path)
    missing_backbone = [k for k in expected if k.startswith("backbone.") and k not in state]
    if missing_backbone:
        raise DataFormatError(f"train.init_weights: the file lacks backbone tensors of this model "
                              f"(another backbone?), e.g. {missing_backbone[:3]}", path=path)
    other_shape = [k for k in state if k in expected and k not in fitting]
    not_in_file = [k for k in expected if k not in state]
    if other_shape or not_in_file:
        warnings.warn(f"{path}: initialised {len(fitting)}/{len(expected)} model tensors; these keep "
                      f"their init: other shape {other_shape[:6]}{' ...' if len(other_shape) > 6 else ''}, "
                      f"not in the file {not_in_file[:6]}{' ...' if len(not_in_file) > 6 else ''}",
                      stacklevel=3)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in fitting.items()}, strict=False)
