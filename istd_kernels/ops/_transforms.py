"""``torch.func`` support for the ops' custom ops: grad, jacrev, vjp, vmap, functional_call.

The autograd that ``register_autograd`` gives a ``torch.library`` custom op is an
``autograd.Function`` without a ``setup_context``, which ``torch.func`` refuses. Under a
function transform an op therefore runs its custom op inside an ``autograd.Function`` that
has one (the op's own ``setup_context`` and ``backward``) and generates its vmap rule; the
custom ops get a vmap rule that runs them once per batch entry. Outside transforms the
custom op is called directly, so ``torch.compile`` and ``opcheck`` see it unchanged; a plain
eager call with nothing for autograd to record (:func:`plain_eager`) skips the custom op and
runs the function it wraps.

The kernel backwards are not differentiable: a second derivative raises a RuntimeError
naming ``backend="torch"``, whose plain-PyTorch ops differentiate any number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def transforming() -> bool:
    """Whether a ``torch.func`` transform (grad, vjp, jacrev, vmap, ...) is active.

    False while torch.compile traces: Dynamo runs the custom ops as they are (it reports an
    interpreter stack of its own while tracing).
    """
    return not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is not None


def _tensors(args: Sequence):
    for a in args:
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, Tensor))


def plain_eager(args: Sequence) -> bool:
    """Whether a call with ``args`` may run a custom op's function without the custom op.

    The custom op's dispatcher round trip and autograd wrapper cost about 0.1 ms a call on
    the CPU, several milliseconds per LCRNet forward (docs/performance.md, issue 30), and do
    nothing for a call that autograd does not record. True when: no ``torch.compile`` or JIT
    trace, transform, dispatch or function mode (fake tensors, op recorders) or profiler (its
    tables name the custom ops) is active, and every tensor is a plain tensor or parameter on
    the CPU or a GPU that autograd will not record (grad mode off, or none requires grad).
    """
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or transforming() or is_in_torch_dispatch_mode()
            or torch._C._is_torch_function_mode_enabled() or torch.autograd._profiler_enabled()):
        return False
    recording = torch.is_grad_enabled()
    return all(type(t) in (Tensor, nn.Parameter) and t.device.type in ("cpu", "cuda")
               and not (recording and t.requires_grad) for t in _tensors(args))


def current() -> str:
    """The name of the innermost active transform (\"vmap\", \"grad\", \"jvp\", ...)."""
    return str(torch._C._functorch.peek_interpreter_stack().key()).rsplit(".", 1)[-1].lower()


def double_backward_error(op: str) -> RuntimeError:
    """The error of differentiating ``op``'s kernel backward."""
    return RuntimeError(f"{op}: double backward (a gradient of the gradient, e.g. torch.func.grad of grad, or "
                        "create_graph=True then backward) is not supported by the kernel backends, whose backward "
                        "is a kernel; backend=\"torch\" supports it")


def _take(arg, dim, i: int):
    """Entry ``i`` along the vmapped dimension ``dim`` of one custom-op argument."""
    if isinstance(arg, (list, tuple)) and isinstance(dim, (list, tuple)):
        return [_take(a, d, i) for a, d in zip(arg, dim)]
    if isinstance(arg, Tensor) and dim is not None:
        return arg.select(dim, i)
    return arg


def _stack(outs: list):
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.stack(outs)
    return type(first)(torch.stack(list(parts)) for parts in zip(*outs))


def register_loop_vmap(op) -> None:
    """Give custom op ``op`` a vmap rule: one call per batch entry, outputs stacked on dim 0."""

    def rule(info, in_dims, *args):
        outs = [op(*(_take(a, d, i) for a, d in zip(args, in_dims))) for i in range(info.batch_size)]
        return _stack(outs), 0

    op.register_vmap(rule)


def _raise_double_backward(op: str) -> Callable:
    def backward(ctx, *grads):
        raise double_backward_error(op)

    return backward


def backward_op(op, name: str, direct: Callable) -> Callable:
    """``op`` (a custom op computing a kernel backward, made from the function ``direct``)
    made transform-ready and closed to a second derivative: the returned callable runs it,
    inside an ``autograd.Function`` under transforms, and ``direct`` itself for a
    :func:`plain_eager` call; differentiating its result raises :func:`double_backward_error`."""
    op.register_autograd(_raise_double_backward(name), setup_context=lambda ctx, inputs, output: None)
    register_loop_vmap(op)

    class Backward(torch.autograd.Function):
        generate_vmap_rule = True
        forward = _forward_on_flat(op)

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        backward = staticmethod(_raise_double_backward(name))

    return _under_transforms_via(op, Backward, direct)


def _forward_on_flat(op) -> staticmethod:
    """An ``autograd.Function.forward`` that regroups the spread arguments (:func:`_flatten`)
    for ``op`` and returns a list output as a tuple (a Function returns tensors or tuples)."""
    def forward(spec, *flat):
        out = op(*_group(spec, flat))
        return tuple(out) if isinstance(out, list) else out

    return staticmethod(forward)


def _under_transforms_via(op, function: type, direct: Callable) -> Callable:
    """``direct`` for a :func:`plain_eager` call, else ``op`` outside transforms; under them,
    ``function.apply`` on the spread arguments."""
    def call(*args):
        if plain_eager(args):
            return direct(*args)
        if not transforming():
            return op(*args)
        out = function.apply(*_flatten(args))
        return list(out) if isinstance(out, tuple) else out

    return call


def _flatten(args: Sequence) -> tuple:
    """``(spec, *flat)``: ``args`` with each list of tensors spread out (an ``autograd.Function``
    tracks direct tensor arguments only), after ``spec``, the lengths that regroup them
    (None: an argument kept as it is)."""
    flat, spec = [], []
    for a in args:
        if isinstance(a, (list, tuple)) and a and all(isinstance(t, Tensor) for t in a):
            flat.extend(a)
            spec.append(len(a))
        else:
            flat.append(a)
            spec.append(None)
    return (tuple(spec), *flat)


def _group(spec: tuple, flat: Sequence) -> list:
    out, i = [], 0
    for n in spec:
        if n is None:
            out.append(flat[i])
            i += 1
        else:
            out.append(list(flat[i:i + n]))
            i += n
    return out


def _spread(spec: tuple, grouped: Sequence) -> list:
    out = []
    for n, g in zip(spec, grouped):
        out.extend((g if g is not None else [None] * n) if n is not None else [g])
    return out


def differentiable_op(op, setup_context: Callable, backward: Callable, direct: Callable) -> Callable:
    """``op`` (a custom op made from the function ``direct``, with
    ``register_autograd(backward, setup_context=setup_context)``) as a callable that also runs
    under ``torch.func`` transforms.

    A :func:`plain_eager` call runs ``direct``; any other call outside transforms runs ``op``.
    Under them, an ``autograd.Function`` runs ``op`` with the
    same ``setup_context`` and ``backward``; list-of-tensor inputs are spread into separate
    arguments (a Function tracks only direct tensor arguments) and a list output becomes a
    tuple, both regrouped for ``setup_context`` and ``backward``.
    """
    register_loop_vmap(op)

    class Function(torch.autograd.Function):
        generate_vmap_rule = True
        forward = _forward_on_flat(op)

        @staticmethod
        def setup_context(ctx, inputs, output):
            spec, *flat = inputs
            ctx.istd_spec = spec
            ctx.istd_list_out = isinstance(output, tuple)
            setup_context(ctx, _group(spec, flat), list(output) if ctx.istd_list_out else output)

        @staticmethod
        def backward(ctx, *grads):
            spec, flat_need = ctx.istd_spec, ctx.needs_input_grad
            ctx.needs_input_grad = tuple(_group(spec, flat_need[1:]))
            try:
                grouped = backward(ctx, list(grads)) if ctx.istd_list_out else backward(ctx, *grads)
            finally:
                ctx.needs_input_grad = flat_need
            return (None, *_spread(spec, grouped))

    return _under_transforms_via(op, Function, direct)
