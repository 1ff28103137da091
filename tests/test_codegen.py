"""sg.compile's code generation as text in, text out: a trace built by hand (and its analysis) in, the
source of forward, backward and run out (scratch_grad/compiler/codegen.py). Whether that code computes
what eager mode computes is tested elsewhere (test_compile.py, parity_tests/test_compiled.py); here,
that it is the code we mean: what is saved, what is freed and where, where a gradient is reduced or
summed, and that a change in the trace or its analysis shows in the text."""
import dataclasses
import types

import numpy as np
import pytest

import scratch_grad as sg
from scratch_grad.compiler import codegen
from scratch_grad.compiler.analysis import Analysis, Observation, analyze
from scratch_grad.compiler.codegen import generate
from scratch_grad.compiler.tracing import Binding, TracedCall
from scratch_grad.trace import Ref, Step, Trace

R = sg.REGISTRY


def _step(name, *args, edges=None):
    spec = R[name]
    return Step(spec, tuple(args), {}, spec.vjps, tuple(range(len(args))) if edges is None else edges)


def _call(trace, aux_refs=None):
    """The trace as a call of f(*leaves), every leaf a Variable argument."""
    n = len(trace.leaves)
    return TracedCall("f", n, tuple(("slot", k) for k in range(n)),
                      tuple(Binding("variable", k, None) for k in range(n)), trace, True,
                      list if aux_refs is not None else None, aux_refs)


def _broadcast_trace(b_shape=(4,), middle="exp", b_edge=True):
    """sum(exp(x + b)), x (3, 4), b broadcast along x's leading axis."""
    steps = [_step("add", Ref("leaf", 0), Ref("leaf", 1), edges=(0, 1) if b_edge else (0,)),
             _step(middle, Ref("step", 0)),
             _step("sum", Ref("step", 1))]
    return Trace([np.ones((3, 4)), np.ones(b_shape)], [True, b_edge], [], steps, [2])


def _source(trace, aux_refs=None):
    return generate(_call(trace, aux_refs), analyze(trace, True, aux_refs or ())).source


def _function(source, name):
    """The text of one generated function."""
    return next(part for part in source.split("\n\n\n") if part.startswith(f"def {name}("))


FORWARD = """\
def forward(i0, i1):
    v0 = F0(i0, i1)   # add
    v1 = F1(v0)   # exp
    del v0
    v2 = asarray(F2(v1))   # sum
    return v2, [(v1, ), None]"""

BACKWARD = """\
def backward(g, saved):
    v1, = saved
    # sum
    G1 = B2_0(g, None, v1)
    # exp
    G0 = B1_0(G1, v1, None)
    del G1
    # add
    R0 = B0_0(G0, None, None, None)
    t = B0_1(G0, None, None, None)
    t = add_reduce(t, 0)        # broadcasting undone over the leading axis
    R1 = t
    del G0
    # one buffer returned for two inputs would let the engine add one's gradient into the other's
    if R1 is R0: R1 = R1.copy()
    return (R0, R1, )"""


def test_forward_and_backward_of_a_three_op_trace_are_the_expected_text():
    """exp's VJP reads its output (saved); add's output is read by nothing after exp (freed there);
    sum's VJP reads its input for the shape (so exp's output is saved, not freed); b's gradient is
    reduced over the leading axis; the two returned gradients are never one buffer."""
    source = _source(_broadcast_trace())
    assert _function(source, "forward") == FORWARD
    assert _function(source, "backward") == BACKWARD


def test_the_names_table_holds_the_ops_functions_under_the_names_the_text_reads():
    trace = _broadcast_trace()
    generated = generate(_call(trace), analyze(trace, True))
    names = generated.names
    assert names["F0"] is R["add"].forward and names["F1"] is R["exp"].forward
    assert names["B0_1"] is R["add"].vjps[1] and names["B2_0"] is R["sum"].vjps[0]
    assert names["EDGES"] == (0, 1) and names["MISS"] is codegen.MISS
    # the node supplies what closes over itself; nothing else is read from outside the table
    assert not {"SPEC", "VJPS", "AUX"} & set(names)
    assert "record(out, SPEC, VJPS, (a0, a1, ), (saved,), NOPARAMS, EDGES, (a0._version, a1._version, ))" \
        in generated.source


def test_a_changed_trace_changes_the_text():
    """Must-fail style: the text follows the trace, so a test on it can catch a wrong trace."""
    base = _source(_broadcast_trace())
    same_shape = _source(_broadcast_trace(b_shape=(3, 4)))    # no broadcast: nothing to reduce
    assert "add_reduce" in base and "add_reduce" not in same_shape
    tanh = _source(_broadcast_trace(middle="tanh"))
    assert "# tanh" in tanh and "# exp" not in tanh and tanh != base
    no_b = _source(_broadcast_trace(b_edge=False))            # b needs no gradient: no edge, no R1
    assert "R1" not in _function(no_b, "backward") and "return (R0, )" in no_b
    assert "if a1.requires_grad is not False:" in no_b


def test_a_changed_analysis_changes_the_text():
    """The reduction and the freeing come from the analysis: without them the text has neither (the
    planted 'forgot to undo broadcasting' bug of parity_tests/test_compiled.py is this)."""
    trace = _broadcast_trace()
    analysis = analyze(trace, True)
    no_fits = dataclasses.replace(analysis, observation=dataclasses.replace(analysis.observation, fits={}))
    backward = _function(generate(_call(trace), no_fits).source, "backward")
    assert "add_reduce" not in backward and "    R1 = B0_1(G0, None, None, None)" in backward
    keep_all = dataclasses.replace(analysis, dead_after={})
    assert "del v0" in _function(generate(_call(trace), analysis).source, "forward")
    assert "del" not in _function(generate(_call(trace), keep_all).source, "forward")
    unobserved = dataclasses.replace(analysis, observation=dataclasses.replace(analysis.observation, fits=None))
    checked = _function(generate(_call(trace), unobserved).source, "backward")
    assert checked.count("if type(t) is not ndarray") == 4    # every VJP result tested at each call


def test_fan_out_is_summed_in_eager_order_and_planting_an_overwrite_shows_in_the_text(monkeypatch):
    """x * x: both edges reach leaf 0, the second gradient is added to the first."""
    trace = Trace([np.ones(3)], [True], [], [_step("mul", Ref("leaf", 0), Ref("leaf", 0)),
                                               _step("sum", Ref("step", 0))], [1])
    backward = _function(_source(trace), "backward")
    assert "    R0 = B0_0(G0, None, None, i0)\n    t = B0_1(G0, None, i0, None)\n" in backward
    assert "    R0 = R0 + t          # fan-out, summed in eager's order" in backward
    monkeypatch.setattr(codegen, "_ACCUMULATE", "{name} = t")
    assert "R0 = t" in _source(trace) and "R0 = R0 + t" not in _source(trace)


def test_aux_values_are_returned_and_kept_alive():
    """has_aux: the aux value (add's output) is returned beside the output and not freed."""
    source = _source(_broadcast_trace(), aux_refs=(Ref("step", 0),))
    forward = _function(source, "forward")
    assert "del v0" not in forward and forward.endswith("return v2, [(v1, ), None], (v0, )")
    assert "out, saved, aux = forward(i0, i1)" in source and source.rstrip().endswith("AUX(aux)")


def _stub(name, may_produce_nan=False):
    def refuse(*args, **kwargs):
        raise AssertionError(f"code generation called {name}")
    return types.SimpleNamespace(name=name, forward=refuse, may_produce_nan=may_produce_nan)


def test_generation_runs_nothing_and_is_the_same_text_every_time():
    """Stub ops whose forward and VJPs raise if called, with an analysis written by hand: the text
    comes from the trace and the analysis alone."""
    f, g = _stub("f"), _stub("g", may_produce_nan=True)
    refuse = _stub("vjp").forward
    steps = [Step(f, (Ref("leaf", 0), Ref("const", 0)), {"axis": 1}, (refuse, refuse), (0,)),
             Step(g, (Ref("step", 0),), {}, (refuse,), (0,))]
    trace = Trace([np.ones((2, 3))], [True], [np.float64(2.0)], steps, [1])
    types_ = {Ref("leaf", 0): ((2, 3), np.dtype("float64")), Ref("step", 0): ((2,), np.dtype("float64")),
              Ref("step", 1): ((2,), np.dtype("float64"))}
    edges_in_order = ((1, 0, Ref("step", 0)), (0, 0, Ref("leaf", 0)))
    analysis = Analysis(edges_in_order, (0,), {(1, 0): (True, True, False), (0, 0): (True, False, True, True)},
                        (Ref("leaf", 0), Ref("step", 1)), {}, Observation(frozenset(), {(0, 0): "fit"}, types_))
    first = generate(_call(trace), analysis)
    assert first.source == generate(_call(trace), analysis).source
    forward, backward = _function(first.source, "forward"), _function(first.source, "backward")
    # constants are numbered as the backward, then the forward, meets them
    assert "    G0 = B1_0(g, v1, None)\n" in backward
    assert "    t = B0_0(G0, None, i0, K0, **K1)\n" in backward
    assert first.names["K0"] == 2.0 and first.names["K1"] == {"axis": 1}
    assert "    t = FIT(t, K2, K3, 'f', 0)   # broadcasting undone\n    R0 = t\n" in backward
    assert first.names["K2"] == (2, 3) and first.names["K3"] == np.dtype("float64")
    assert "    v0 = F0(i0, K0, **K4)   # f" in forward and first.names["K4"] == {"axis": 1}
    assert "    chk = GM.checking\n" in forward and "        SP1.check_domain((v0, ), v1)" in forward


@pytest.mark.parametrize("how, line", [("asarray", "    t = asarray(t)"),
                                       ("lead", "    t = add_reduce(t, 0)"),
                                       ("fit", "    t = FIT(t, ")])
def test_each_observed_fit_writes_its_own_line(how, line):
    trace = _broadcast_trace()
    analysis = analyze(trace, True)
    analysis = dataclasses.replace(analysis, observation=dataclasses.replace(analysis.observation,
                                                                             fits={(0, 1): how}))
    backward = _function(generate(_call(trace), analysis).source, "backward")
    assert line in backward and backward.count("    t = ") == 2        # the VJP call and its fit
