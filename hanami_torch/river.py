"""River adapter: a Hanami network as a River classifier or regressor (``pip install hanami_torch[river]``).

:class:`HanamiClassifier` and :class:`HanamiRegressor` implement River's ``learn_one(x, y)`` /
``predict_one(x)`` (and ``predict_proba_one(x)``) on dicts of raw feature values, so a Hanami network
drops into River pipelines and ``river.evaluate.progressive_val_score``::

    from river import datasets, evaluate, metrics
    from hanami_torch.river import HanamiClassifier

    evaluate.progressive_val_score(datasets.Phishing(), HanamiClassifier(seed=0), metrics.Accuracy())

The network (:class:`hanami_torch.HanamiCluster`) is built at the first ``learn_one``, from the
features of that sample:

* **Feature order.** The input neurons take the features in sorted order of their names (by
  ``str`` of the name where names of different types are mixed), so the order of a dict's keys
  never matters, as River expects. Pass ``features=[...]`` to fix the names and order yourself
  (for instance when the first sample lacks some).
* **Missing features** (a known name absent from a later sample) are fed as 0, as River's linear
  models treat an absent key: it contributes nothing there.
* **New features** (a name the network was not built with) are ignored: a fixed network has no
  input neuron for them. The first time, a ``UserWarning`` names them and says to list every
  feature with ``features=`` up front.
* **Values** must be real numbers: ``int``, ``float``, NumPy numbers, or ``bool`` (as 0 / 1, like
  River). A string, ``None``, NaN, infinity or a value beyond the float32 range raises
  ``ValueError`` naming the feature; encode categories first (``preprocessing.OneHotEncoder``).

Values are raw: no scaling is needed (the network's input encoding handles ranges), and a
``preprocessing.StandardScaler`` in front does no harm.
"""

from __future__ import annotations

import numbers
import random
import warnings

import numpy as np
import torch

try:
    from river import base
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "hanami_torch.river needs the river package: pip install 'hanami_torch[river]' (or pip install river)"
    ) from error

from .cluster import HanamiCluster
from .template import Template

__all__ = ["HanamiClassifier", "HanamiRegressor", "river_template"]

#: output neurons of a classifier when neither ``max_classes`` nor ``template`` says otherwise
DEFAULT_MAX_CLASSES = 10
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Value types accepted without a closer look (the per-sample check is one set lookup per type).
_PLAIN_REAL_TYPES = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32, np.bool_})


def river_template(n_features: int, hidden: int, n_outputs: int, *, regression: bool = False) -> str:
    """The generated template: ``n_features`` input neurons at 1,1,1, ``hidden`` neurons at 2,1,1
    and ``n_outputs`` output neurons at 3,1,1 (with ``encoding: adaptive`` for a regressor, so the
    network learns the target's location and scale and answers in the target's units)."""
    for name, value in (("n_features", n_features), ("hidden", hidden), ("n_outputs", n_outputs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    encoding = "        encoding: adaptive\n" if regression else ""
    return f"""version: 1
settings:
    max_connection_distance: 1
bricks:
    1,1,1
        input: features
        number_of_neurons: {n_features}
    2,1,1
        number_of_neurons: {hidden}
    3,1,1
        output: {"target" if regression else "classes"}
        number_of_neurons: {n_outputs}
{encoding}"""


def _sort_key(name):
    return (str(name), type(name).__name__)


class _HanamiEstimator:
    """What the classifier and the regressor share: building the network and turning dicts into rows."""

    def _init_common(self, hidden, seed, features, template, cluster_options) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, (int, np.integer)) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer (neurons of the hidden brick), got {hidden!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (a random seed), got {seed!r}")
        if features is not None:
            if isinstance(features, (str, bytes)) or len(set(features)) != len(features) or not features:
                raise ValueError(f"features must be a tuple of distinct feature names, got {features!r}")
            features = tuple(features)
        if template is not None and not isinstance(template, str):
            raise ValueError("template must be template text (see docs/template_format.md) or None")
        self.hidden = hidden
        self.seed = seed
        self.features = features
        self.template = template
        self.cluster_options = cluster_options
        self._cluster: HanamiCluster | None = None
        self._names: tuple = ()
        self._warned_new = False

    # ---- building ---------------------------------------------------------------------------

    def _template_text(self, n_features: int) -> str:
        raise NotImplementedError

    def _build(self, x: dict) -> None:
        if not isinstance(x, dict):
            raise ValueError(f"x must be a dict of feature name -> number, got {type(x).__name__}")
        names = self.features if self.features is not None else tuple(sorted(x, key=_sort_key))
        if not names:
            raise ValueError("the first sample has no features: a network needs at least one input")
        # check the first sample before building, so that a bad one leaves no network behind
        values = [x.get(name, 0) for name in names]
        _check_types(names, values)
        with np.errstate(over="ignore"):
            finite = np.isfinite(np.asarray(values, dtype=np.float32)).all()
        if not finite:
            _raise_not_finite(names, values)
        text = self._template_text(len(names))
        n_inputs = Template.parse(text).n_inputs
        if n_inputs != len(names):
            raise ValueError(
                f"the template has {n_inputs} input neurons but there are {len(names)} features "
                f"({list(names)[:10]}...); give the input brick one neuron per feature"
            )
        seed = self.seed if self.seed is not None else random.randrange(2**31)
        self._cluster = HanamiCluster(text, seed=seed, **self._network_options())
        self._names = names
        self._start_buffers()

    def _network_options(self) -> dict:
        """The keyword arguments of the HanamiCluster."""
        return dict(self.cluster_options)

    def _start_buffers(self) -> None:
        # One preallocated row: filling it costs far less than building a tensor per sample.
        self._row = np.zeros((1, len(self._names)), dtype=np.float32)
        self._x = torch.from_numpy(self._row)
        self._y = torch.zeros(1, self._cluster.n_outputs, dtype=torch.float32)
        self._known = frozenset(self._names)

    def __getstate__(self):
        # The row buffer and its tensor share memory, which pickling would split: rebuild them.
        state = self.__dict__.copy()
        for name in ("_row", "_x", "_y", "_known"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._cluster is not None:
            self._start_buffers()

    # ---- rows -------------------------------------------------------------------------------

    def _fill(self, x: dict) -> torch.Tensor:
        """Writes the features of ``x`` into the row buffer (``[1, n_features]`` float32) and returns it."""
        if not isinstance(x, dict):
            raise ValueError(f"x must be a dict of feature name -> number, got {type(x).__name__}")
        names = self._names
        values = [x.get(name, 0) for name in names]
        if not _PLAIN_REAL_TYPES.issuperset(map(type, values)):
            _check_types(names, values)
        if not self._warned_new and not self._known.issuperset(x):
            self._warn_new(x)
        row = self._row
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf and is reported below
            row[0] = values
        if not np.isfinite(row).all():
            _raise_not_finite(names, values)
        return self._x

    def _warn_new(self, x: dict) -> None:
        known = self._known
        new = [name for name in x if name not in known]
        if new:
            self._warned_new = True
            warnings.warn(
                f"features {new[:10]} were not in the first sample and are ignored (the network has "
                f"input neurons for {len(known)} features); list every feature up front with "
                f"{type(self).__name__}(features=[...]). This warning is shown once.",
                UserWarning,
                stacklevel=4,  # the caller of learn_one / predict_one
            )

    @property
    def cluster(self) -> HanamiCluster | None:
        """The network, or None before the first ``learn_one``."""
        return self._cluster

    @property
    def feature_names(self) -> tuple:
        """The features in input-neuron order (empty before the first ``learn_one``)."""
        return self._names


def _check_types(names, values) -> None:
    for name, value in zip(names, values):
        if isinstance(value, (str, bytes)) or value is None or not isinstance(value, numbers.Real):
            raise ValueError(
                f"feature {name!r} is {value!r} ({type(value).__name__}); Hanami takes real numbers "
                "(bool counts as 0/1): encode it first (e.g. preprocessing.OneHotEncoder for "
                "categories) or drop it (compose.Discard)"
            )


def _raise_not_finite(names, values) -> None:
    for name, value in zip(names, values):
        value = float(value)
        if not np.isfinite(value) or abs(value) > _FLOAT32_MAX:
            what = "beyond the float32 range" if np.isfinite(value) else "not finite"
            raise ValueError(
                f"feature {name!r} is {value!r}, {what}; Hanami takes any finite value (no "
                "normalisation needed), so replace or drop that sample"
            )
    raise AssertionError("a non-finite value was written but none was found")  # pragma: no cover


class HanamiClassifier(_HanamiEstimator, base.Classifier):
    """A Hanami network as a River classifier.

    Classes are mapped to output neurons in the order they first appear in ``learn_one``; the
    target of a sample is one-hot. ``predict_proba_one`` divides the outputs of the classes seen so
    far by their sum (uniform while all of them are 0), ``predict_one`` returns the most likely
    class. Before the first ``learn_one`` they return ``{}`` and ``None``, as River's classifiers do.

    Parameters
    ----------
    hidden
        Neurons of the hidden brick.
    seed
        Seed of the network's growth; None draws a random one when the network is built.
    max_classes
        Output neurons, that is, the most classes the classifier can tell apart (a further class
        raises ValueError). Default 10, or the output neurons of ``template``.
    features
        The feature names in input-neuron order; None takes the first sample's features, sorted.
    template
        Full template text to use instead of the generated one (see ``river_template``); its
        input bricks must have one neuron per feature.
    input_fan_in
        Sections each input neuron opens, to as many random hidden blocks (``HanamiCluster``'s
        option). Default 4: tabular streams have few features, and each reaching four places
        of the hidden brick gained 3 to 5 points on Phishing and Bananas (docs/streams.md).
    cluster_options
        Passed to :class:`hanami_torch.HanamiCluster` (``learning_rate``, ``optimizer``, ...).
    """

    def __init__(
        self,
        hidden: int = 200,
        seed: int | None = 0,
        max_classes: int | None = None,
        features: tuple | None = None,
        template: str | None = None,
        input_fan_in: int = 4,
        **cluster_options,
    ):
        self._init_common(hidden, seed, features, template, cluster_options)
        self.input_fan_in = input_fan_in
        if max_classes is not None and (
            isinstance(max_classes, bool) or not isinstance(max_classes, (int, np.integer)) or max_classes < 2
        ):
            raise ValueError(f"max_classes must be an integer >= 2 or None, got {max_classes!r}")
        if template is not None and max_classes is not None:
            outputs = Template.parse(template).n_outputs
            if outputs != max_classes:
                raise ValueError(
                    f"max_classes={max_classes} but the template has {outputs} output neurons; leave "
                    "max_classes at None to use the template's outputs"
                )
        self.max_classes = max_classes
        self._classes: dict = {}
        self._class_list: list = []

    def _network_options(self) -> dict:
        return {"input_fan_in": self.input_fan_in, **self.cluster_options}

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden": 32}

    def _template_text(self, n_features: int) -> str:
        if self.template is not None:
            return self.template
        classes = self.max_classes if self.max_classes is not None else DEFAULT_MAX_CLASSES
        return river_template(n_features, self.hidden, classes)

    def _class_index(self, y) -> int:
        index = self._classes.get(y)
        if index is None:
            index = len(self._class_list)
            if index >= self._cluster.n_outputs:
                raise ValueError(
                    f"class {y!r} is class number {index + 1}, but the network has "
                    f"{self._cluster.n_outputs} output neurons (classes so far: {self._class_list}); "
                    "raise max_classes"
                )
            self._classes[y] = index
            self._class_list.append(y)
        return index

    def learn_one(self, x: dict, y) -> None:
        if self._cluster is None:
            self._build(x)
        row = self._fill(x)
        index = self._class_index(y)
        target = self._y
        target.zero_()
        target[0, index] = 1.0
        self._cluster.learn_many(row, target)

    def _outputs(self, x: dict) -> list[float]:
        """Outputs of the seen classes' neurons, in class order."""
        outputs = self._cluster.predict_many(self._fill(x))[0]
        return outputs[: len(self._class_list)].tolist()

    def predict_proba_one(self, x: dict) -> dict:
        if self._cluster is None:
            return {}
        outputs = self._outputs(x)
        total = sum(outputs)
        if total > 0:
            return {label: value / total for label, value in zip(self._class_list, outputs)}
        return {label: 1.0 / len(outputs) for label in self._class_list}

    def predict_one(self, x: dict):
        if self._cluster is None:
            return None
        outputs = self._outputs(x)
        return self._class_list[max(range(len(outputs)), key=outputs.__getitem__)]

    @property
    def classes(self) -> list:
        """The classes seen so far, in output-neuron order."""
        return list(self._class_list)


class HanamiRegressor(_HanamiEstimator, base.Regressor):
    """A Hanami network as a River regressor.

    The target is a float in any unit: the generated template's output neuron has
    ``encoding: adaptive``, so the network learns the target's location and scale online and
    ``predict_one`` answers in the target's units. Before the first ``learn_one``,
    ``predict_one`` returns 0.0, as River's linear regression does.

    Parameters
    ----------
    hidden
        Neurons of the hidden brick.
    seed
        Seed of the network's growth; None draws a random one when the network is built.
    features
        The feature names in input-neuron order; None takes the first sample's features, sorted.
    template
        Full template text to use instead of the generated one (see ``river_template``): one
        output neuron, and inputs with one neuron per feature.
    cluster_options
        Passed to :class:`hanami_torch.HanamiCluster` (``learning_rate``, ``optimizer``, ...).
    """

    def __init__(
        self,
        hidden: int = 200,
        seed: int | None = 0,
        features: tuple | None = None,
        template: str | None = None,
        **cluster_options,
    ):
        self._init_common(hidden, seed, features, template, cluster_options)
        if template is not None and Template.parse(template).n_outputs != 1:
            raise ValueError("a regressor's template needs exactly one output neuron")

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden": 32}

    def _template_text(self, n_features: int) -> str:
        if self.template is not None:
            return self.template
        return river_template(n_features, self.hidden, 1, regression=True)

    def learn_one(self, x: dict, y) -> None:
        if self._cluster is None:
            self._build(x)
        row = self._fill(x)
        if isinstance(y, (str, bytes)) or y is None or not isinstance(y, numbers.Real):
            raise ValueError(f"the target must be a real number, got {y!r} ({type(y).__name__})")
        y = float(y)
        if not np.isfinite(y) or abs(y) > _FLOAT32_MAX:
            raise ValueError(f"the target is {y!r}; it must be finite and within the float32 range")
        self._y[0, 0] = y
        self._cluster.learn_many(row, self._y)

    def predict_one(self, x: dict) -> float:
        if self._cluster is None:
            return 0.0
        return float(self._cluster.predict_many(self._fill(x))[0, 0])
