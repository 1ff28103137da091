"""scratch_grad.nn: modules, losses and optimizers, each checked against torch, state save/load, and the
training loop (fit, eager and compiled). The experiments run with it: tests/test_experiments.py and
tests/test_training_parity.py."""
import ast
import math
import pathlib

import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad import nn
from scratch_grad.errors import DTypeError, GraphError, ScratchGradError, ShapeError
from scratch_grad.experiments.lockstep import _torch_model

torch = pytest.importorskip("torch")


def rng(seed=0):
    return np.random.default_rng(seed)


def as_torch(array, requires_grad=False):
    return torch.tensor(np.array(array), requires_grad=requires_grad)


# ---- Parameter, Module ------------------------------------------------------------------------------

def test_from_scratch_grad_import_nn_is_the_nn_package():
    # the neural-network ops once lived in scratch_grad.ops.nn, whose name shadowed this package
    from scratch_grad import nn as imported
    assert imported is nn and hasattr(sg.nn, "Linear") and hasattr(sg.nn, "SGD")


def _imported_modules(source, package):
    """Every module an import statement in `source` (a module of `package`) may load: for `from X import a`
    both X and X.a, relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


LAYERS_ABOVE_NN = ("scratch_grad.experiments", "scratch_grad.testing", "scratch_grad.cli")


def test_the_nn_library_imports_no_experiment_no_checker_and_no_cli():
    """Imports run one way: experiments, the oracle and the CLI build on scratch_grad.nn, never the reverse."""
    package = pathlib.Path(nn.__file__).parent
    imported = {path.name: _imported_modules(path.read_text(), "scratch_grad.nn")
                for path in package.glob("*.py")}
    assert {"__init__.py", "modules.py", "losses.py", "optim.py", "training.py"} <= set(imported)
    assert "scratch_grad.engine" in imported["training.py"]           # the walk sees relative imports
    upward = {name: sorted(m for m in modules if m.startswith(LAYERS_ABOVE_NN)) for name, modules in imported.items()}
    assert not any(upward.values()), upward
    # and it would see one: a function-local relative import of an experiment, or an absolute one of the oracle
    planted = "def f():\n    from ..experiments import runs\n    import scratch_grad.testing.oracle\n"
    assert {"scratch_grad.experiments.runs", "scratch_grad.testing.oracle"} <= _imported_modules(planted,
                                                                                                  "scratch_grad.nn")


def test_every_module_of_the_package_is_reachable_by_its_name():
    """No exported name hides a module of the package (as the old ops.nn once hid this package: see above)."""
    import importlib
    import pkgutil
    names = [info.name for info in pkgutil.iter_modules(nn.__path__)]
    assert {"modules", "losses", "optim", "training"} <= set(names)
    for name in names:
        module = importlib.import_module(f"scratch_grad.nn.{name}")
        assert getattr(nn, name) is module, name


def test_parameter_requires_grad_and_refuses_integers():
    p = nn.Parameter([1.0, 2.0])
    assert p.requires_grad and p.is_leaf and p.dtype == np.float64
    with pytest.raises(DTypeError):
        nn.Parameter(np.array([1, 2]))


def test_module_registers_parameters_and_submodules_in_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(3, 4, rng=rng())
            self.scale = nn.Parameter(np.ones(4))
            self.second = nn.Linear(4, 2, rng=rng())
            self.plain = np.zeros(3)          # not a parameter

    net = Net()
    assert [name for name, _ in net.named_parameters()] == [
        "scale", "first.weight", "first.bias", "second.weight", "second.bias"]
    net.scale = np.ones(4)                    # reassigning a non-parameter unregisters it
    assert "scale" not in dict(net.named_parameters())


def test_module_needs_init_before_attributes():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter([1.0])

    with pytest.raises(ScratchGradError, match="Module.__init__"):
        Broken()


def test_shared_parameter_is_listed_once():
    layer = nn.Linear(3, 3, rng=rng())
    model = nn.Sequential(layer, nn.Tanh(), layer)
    assert len(model.parameters()) == 2


def test_zero_grad_train_eval():
    model = nn.MLP([4, 5, 3], activation="relu", dropout=0.5, rng=rng())
    model(np.ones((2, 4))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


# ---- Linear --------------------------------------------------------------------------------------

def test_linear_initialisation_is_torchs_distribution():
    layer = nn.Linear(400, 300, rng=rng())
    bound = 1 / math.sqrt(400)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 400) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-k, k) has standard deviation k / sqrt(3); 120,000 draws pin it to ~0.2%
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert abs(w.mean()) < 0.01 * bound
    reference = torch.nn.Linear(400, 300)
    assert reference.weight.abs().max().item() <= bound


def test_linear_from_given_arrays_and_against_torch():
    gen = rng(1)
    weight, bias, x = gen.normal(size=(3, 5)), gen.normal(size=3), gen.normal(size=(4, 5))
    layer = nn.Linear(5, 3, weight=weight, bias=bias)
    out = layer(x)
    out.backward(np.arange(12.0).reshape(4, 3))
    tw, tb = as_torch(weight, True), as_torch(bias, True)
    t_out = torch.nn.functional.linear(as_torch(x), tw, tb)
    t_out.backward(torch.arange(12.0, dtype=torch.float64).reshape(4, 3))
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(layer.weight.grad, tw.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, tb.grad.numpy(), rtol=1e-14)


def test_linear_without_bias_and_in_float32():
    layer = nn.Linear(3, 2, bias=False, dtype=np.float32, rng=rng())
    assert layer.bias is None and len(layer.parameters()) == 1
    assert layer(np.ones((1, 3), dtype=np.float32)).dtype == np.float32


def test_linear_bad_shapes_say_what_is_expected():
    with pytest.raises(ShapeError, match=r"weight must have shape \(3, 5\) \(out, in\), got \(5, 3\)"):
        nn.Linear(5, 3, weight=np.zeros((5, 3)))
    with pytest.raises(ShapeError, match=r"bias must have shape \(3,\)"):
        nn.Linear(5, 3, bias=np.zeros(4))
    with pytest.raises(ShapeError, match="positive integer"):
        nn.Linear(0, 3)
    with pytest.raises(ShapeError, match=r"input must end in 5 features, got shape \(2, 4\)"):
        nn.Linear(5, 3, rng=rng())(np.zeros((2, 4)))


# ---- MLP and activations against torch ------------------------------------------------------------

@pytest.mark.parametrize("activation", sorted(nn.ACTIVATIONS))
def test_mlp_forward_and_gradients_match_torch(activation):
    model = nn.MLP([6, 5, 4, 3], activation=activation, output_activation="sigmoid", rng=rng(2))
    reference = _torch_model(model, torch).double()
    x = rng(3).normal(size=(7, 6))
    out = model(x)
    (out * out).sum().backward()
    t_out = reference(as_torch(x))
    (t_out * t_out).sum().backward()
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-12, atol=1e-14)
    for name, p in model.named_parameters():
        t = dict(reference.named_parameters())[name]
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        nn.MLP([2, 2, 2], activation="swishy")


def test_dropout_is_inverted_reproducible_and_identity_in_eval():
    x = np.ones((200, 50))
    layer = nn.Dropout(0.25, rng=rng(5))
    v = sg.Variable(x, requires_grad=True)
    out = layer(v)
    kept = out.data != 0
    np.testing.assert_allclose(out.data[kept], 1 / 0.75)     # survivors scaled by 1/(1-p)
    assert abs(kept.mean() - 0.75) < 0.02
    out.sum().backward()
    np.testing.assert_allclose(v.grad, kept / 0.75)           # the gradient is the same scaled mask
    again = nn.Dropout(0.25, rng=rng(5))(x)
    np.testing.assert_array_equal(again.data if isinstance(again, sg.Variable) else again, out.data)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nn.Dropout(1.0)


# ---- losses against torch ----------------------------------------------------------------------------

def _loss_pair(fn, t_fn, prediction, target, t_target=None):
    v = sg.Variable(prediction, requires_grad=True)
    value = fn(v, target)
    value.backward() if value.size == 1 else value.backward(np.ones(value.shape))
    t = as_torch(prediction, True)
    t_value = t_fn(t, as_torch(target) if t_target is None else t_target)
    t_value.backward(torch.ones_like(t_value))
    np.testing.assert_allclose(value.data, t_value.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(v.grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_cross_entropy_bce_match_torch(reduction):
    gen = rng(4)
    prediction, target = gen.normal(size=(6, 4)), gen.normal(size=(6, 4))
    functional = torch.nn.functional
    _loss_pair(lambda p, t: nn.mse_loss(p, t, reduction), lambda p, t: functional.mse_loss(p, t, reduction=reduction),
               prediction, target)
    labels = gen.integers(0, 4, size=6)
    _loss_pair(lambda p, t: nn.cross_entropy(p, t, reduction),
               lambda p, t: functional.cross_entropy(p, t, reduction=reduction), prediction * 10, labels,
               torch.from_numpy(labels))
    probabilities = gen.uniform(size=(6, 4))
    _loss_pair(lambda p, t: nn.binary_cross_entropy_with_logits(p, t, reduction),
               lambda p, t: functional.binary_cross_entropy_with_logits(p, t, reduction=reduction),
               prediction * 30, probabilities)


def test_quadratic_cost_is_half_sum_of_squares_over_batch():
    gen = rng(6)
    output, target = gen.uniform(size=(20, 10)), np.eye(10)[gen.integers(0, 10, 20)]
    v = sg.Variable(output, requires_grad=True)
    cost = nn.quadratic_cost(v, target)
    assert cost.item() == pytest.approx(np.sum((output - target) ** 2) / 40, rel=1e-14)
    cost.backward()
    np.testing.assert_allclose(v.grad, (output - target) / 20, rtol=1e-14)


def test_loss_modules_and_lookup():
    assert isinstance(nn.loss("cross_entropy"), nn.CrossEntropyLoss)
    assert nn.MSELoss("sum")(np.ones(3), np.zeros(3)) == 3
    with pytest.raises(ValueError, match="choose one of"):
        nn.loss("hinge")
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss("average")


def test_bad_loss_inputs_name_the_problem():
    logits = sg.Variable(np.zeros((3, 4)), requires_grad=True)
    with pytest.raises(DTypeError, match="integer class"):
        nn.cross_entropy(logits, np.zeros(3))
    with pytest.raises(ScratchGradError, match="class 4"):
        nn.cross_entropy(logits, np.array([0, 1, 4]))
    with pytest.raises(ShapeError):
        nn.mse_loss(logits, np.zeros((4, 3)))


# ---- optimizers against torch.optim ---------------------------------------------------------------

OPTIMIZER_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.4, 0.6), eps=1e-6)),      # weight >= 0.5: lerp's other branch
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, settings", OPTIMIZER_CASES)
def test_optimizer_steps_match_torch(name, settings, dtype):
    """Eight steps with the same (arbitrary, sign-changing) gradients: the same update formulas give the same
    parameters to rounding (float64 1e-13; float32 a few ulps)."""
    gen = rng(7)
    starts = [gen.normal(size=(4, 3)).astype(dtype), gen.normal(size=3).astype(dtype)]
    grads = [[(gen.normal(size=s.shape) * 10.0 ** gen.integers(-4, 2)).astype(dtype) for s in starts]
             for _ in range(8)]
    ours = [nn.Parameter(s) for s in starts]
    theirs = [torch.tensor(s, requires_grad=True) for s in starts]
    optimizer = getattr(nn, name)(ours, **settings)
    reference = getattr(torch.optim, name)(theirs, foreach=False, **settings)
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    for step, step_grads in enumerate(grads, start=1):
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        optimizer.step()
        reference.step()
        for k, (p, t) in enumerate(zip(ours, theirs)):
            assert p.dtype == dtype
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol,
                                       err_msg=f"{name} {settings} step {step} parameter {k}")


def test_a_formula_slip_is_visible_against_torch():
    """The comparison above can fail: Adam with torch's defaults except eps differs after one step."""
    gen = rng(8)
    start, grad = gen.normal(size=5), gen.normal(size=5) * 1e-6
    ours, theirs = nn.Parameter(start), torch.tensor(start, requires_grad=True)
    optimizer, reference = nn.Adam([ours], lr=0.01, eps=1e-7), torch.optim.Adam([theirs], lr=0.01, foreach=False)
    ours.grad, theirs.grad = grad, torch.from_numpy(grad.copy())
    optimizer.step()
    reference.step()
    assert not np.allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=0)


def test_optimizer_skips_parameters_without_gradient_and_checks_shapes():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))
    optimizer = nn.SGD([a, b], lr=0.5)
    a.grad = np.ones(2)
    optimizer.step()
    np.testing.assert_array_equal(a.data, [0.5, 0.5])
    np.testing.assert_array_equal(b.data, [1, 1, 1])
    b.grad = np.ones(4)
    with pytest.raises(ShapeError, match=r"parameter 1 has shape \(3,\) but its gradient has shape \(4,\)"):
        optimizer.step()


@pytest.mark.parametrize("make, message", [
    (lambda p: nn.SGD(p, lr=-1), "lr must be in"),
    (lambda p: nn.SGD(p, lr=float("nan")), "finite"),
    (lambda p: nn.SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: nn.Adam(p, betas=(0.9, 1.0)), "betas"),
    (lambda p: nn.Adam(p, betas=(0.9,)), "pair"),
    (lambda p: nn.SGD([], lr=0.1), "empty"),
    (lambda p: nn.SGD([sg.Variable([1.0])], lr=0.1), "requires grad"),
    (lambda p: nn.SGD(p + p, lr=0.1), "twice"),
])
def test_bad_optimizer_settings_are_refused(make, message):
    with pytest.raises((ValueError, ScratchGradError), match=message):
        make([nn.Parameter(np.ones(2))])


# ---- state: save / load -------------------------------------------------------------------------------

def test_model_state_round_trip_through_npz(tmp_path):
    model = nn.MLP([5, 4, 3], rng=rng(9))
    path = model.save(tmp_path / "model")
    assert path.endswith(".npz")
    other = nn.MLP([5, 4, 3], rng=rng(10))
    x = rng(11).normal(size=(2, 5))
    assert not np.allclose(other(x).data, model(x).data)
    other.load(path)
    np.testing.assert_array_equal(other(x).data, model(x).data)


def test_load_state_dict_checks_names_and_shapes_and_takes_torch_tensors():
    model = nn.MLP([5, 4, 3], rng=rng(9))
    state = model.state_dict()
    with pytest.raises(ShapeError, match=r"'0.weight' has shape \(4, 5\) but the state holds shape \(5, 4\)"):
        model.load_state_dict({**state, "0.weight": np.zeros((5, 4))})
    with pytest.raises(ScratchGradError, match="missing keys"):
        model.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    reference = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).double()
    model.load_state_dict(reference.state_dict())
    x = rng(12).normal(size=(3, 5))
    np.testing.assert_allclose(model(x).data, reference(as_torch(x)).detach().numpy(), rtol=1e-14)


@pytest.mark.parametrize("make", [lambda p: nn.SGD(p, lr=0.3, momentum=0.9, nesterov=True),
                                  lambda p: nn.Adam(p, lr=0.01, amsgrad=True), lambda p: nn.AdamW(p, lr=0.01)])
def test_optimizer_state_round_trip_resumes_bit_for_bit(tmp_path, make):
    x, y = rng(13).normal(size=(8, 4)), rng(14).integers(0, 3, size=8)

    def train(model, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            nn.cross_entropy(model(x), y).backward()
            optimizer.step()

    straight = nn.MLP([4, 6, 3], rng=rng(15))
    straight_opt = make(straight.parameters())
    train(straight, straight_opt, 6)

    first = nn.MLP([4, 6, 3], rng=rng(15))
    first_opt = make(first.parameters())
    train(first, first_opt, 3)
    model_path, opt_path = first.save(tmp_path / "m.npz"), first_opt.save(tmp_path / "o.npz")
    resumed = nn.MLP([4, 6, 3], rng=rng(99))
    resumed_opt = make(resumed.parameters())
    resumed.load(model_path)
    resumed_opt.load(opt_path)
    assert resumed_opt.step_count == 3
    train(resumed, resumed_opt, 3)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_optimizer_state_of_another_kind_is_refused(tmp_path):
    params = nn.MLP([2, 2], rng=rng()).parameters()
    path = nn.SGD(params, lr=0.1).save(tmp_path / "sgd.npz")
    with pytest.raises(ScratchGradError, match="from a SGD"):
        nn.Adam(params).load(path)
    with pytest.raises(ScratchGradError, match="cannot read state file"):
        nn.Adam(params).load(tmp_path / "missing.npz")


# ---- the training loop ----------------------------------------------------------------------------------

def test_fit_reports_each_epoch_and_evaluate_leaves_no_graph():
    x = np.random.default_rng(0).normal(size=(64, 4))
    labels = (x[:, 0] > 0).astype(np.int64)
    model = nn.MLP([4, 8, 2], rng=np.random.default_rng(1))
    seen = []
    history = nn.fit(model, nn.cross_entropy, nn.Adam(model.parameters(), lr=0.05), x, labels, 5, 16,
                     np.random.default_rng(2), labels=labels, x_test=x, y_test=labels, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2, 3, 4, 5] and history.epochs == seen
    assert history.losses[-1] < history.losses[0]
    assert history.test_accuracies[-1] > 0.9
    outputs = nn.predict(model, x)
    assert isinstance(outputs, np.ndarray) and outputs.shape == (64, 2) and model.training


@pytest.mark.parametrize("loss_fn, dtype", [("quadratic", np.float64), ("cross_entropy", np.float32)])
def test_compiled_training_equals_eager_training_bit_for_bit(loss_fn, dtype):
    """fit(compile=True): the same losses, accuracies and weights to the last bit, over epochs whose
    last batch is shorter (a second trace) and with Adam's in-place updates between replays."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 6)).astype(dtype)
    labels = rng.integers(0, 3, 70)
    targets = nn.one_hot(labels, 3, dtype) if loss_fn == "quadratic" else labels
    loss = nn.quadratic_cost if loss_fn == "quadratic" else nn.cross_entropy
    runs = []
    for compile in (False, True):
        model = nn.MLP([6, 5, 3], activation="sigmoid", output_activation="sigmoid" if loss_fn == "quadratic"
                       else None, dtype=dtype, rng=np.random.default_rng(1))
        history = nn.fit(model, loss, nn.Adam(model.parameters(), lr=0.01), x, targets, 3, 16,
                         np.random.default_rng(2), labels=labels, compile=compile)
        runs.append((history, [p.data.copy() for p in model.parameters()]))
    (eager, eager_weights), (compiled, compiled_weights) = runs
    assert compiled.losses == eager.losses and compiled.accuracies == eager.accuracies
    for a, b in zip(eager_weights, compiled_weights):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_compiled_training_refuses_dropout_in_training_mode():
    x = np.random.default_rng(0).normal(size=(8, 4))
    labels = np.zeros(8, dtype=np.int64)
    model = nn.MLP([4, 8, 2], dropout=0.5, rng=np.random.default_rng(1))
    with pytest.raises(GraphError, match="Dropout in training mode"):
        nn.fit(model, nn.cross_entropy, nn.SGD(model.parameters(), lr=0.1), x, labels, 1, 4,
               np.random.default_rng(2), labels=labels, compile=True)
