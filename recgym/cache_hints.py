"""Cache hints for the compiled kernels (:mod:`recgym.dynamics`, :mod:`recgym.users`): ask the CPU to
start loading a row at a random place a few iterations before the kernel reads it, so that the misses
of consecutive iterations overlap. A hint never faults and changes no result."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: How many iterations ahead a kernel asks for the rows it will read (:mod:`recgym.dynamics`'s step and
#: session starts, :mod:`recgym.users`' session ends and restarts).
PREFETCH_AHEAD = 4


@intrinsic
def prefetch(typingctx, vector, index):
    """Hint the CPU to start loading the cache line holding ``vector[index]`` (1-D array).
    A hint only: it never faults and changes no result."""

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])
        byte_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, hint, "llvm.prefetch.p0")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])  # read, keep, data
        return context.get_dummy_value()

    return types.void(vector, index), codegen


@njit(cache=True, inline="always")
def prefetch_row(row: np.ndarray) -> None:
    """Start loading every 64-byte cache line of the 1-D array ``row``."""
    for index in range(0, row.shape[0], max(64 // row.itemsize, 1)):
        prefetch(row, index)
