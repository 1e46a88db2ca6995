"""The performance model's compiled core: `gemmstone.sim.performance`'s model as one state
machine over numpy arrays, compiled with numba.

`gemmstone.sim.performance._Run` is the readable reference: generator actors (fetch and
dispatch, the three units, the read channel) on an event loop. This module runs the same
model with the same arithmetic in the same order, so it gives identical cycles, counters
and arbiter grant, and raises the same exceptions with the same messages; the tests
(tests/sim/test_performance_core.py) compare the two on random programs, the calibration
programs and every fault path. What changes is only the representation:

- each generator is a resume point (``*_pc``) plus its local variables, and ``yield`` is
  "return a wake-up time (or none) to the event loop";
- the event heap holds at most one live entry per actor, so it is five (time, sequence)
  slots and the next event is the smallest of them (the same order as the heap's);
- `ReadCommand` objects are one slot per read client (a client has one command at a time,
  and units only look at their last one); a deque with a ``maxlen`` is a ring of a power
  of two entries indexed by a count of what was appended (`_end_before`);
- `ReadChannel.stream` keeps its counts in locals and the check for a steady state out of
  its loop;
- the read channel's actor, `_stream` and `_submit` are inlined into the event loop
  (numba passes every array as a struct of fields: a call costs more than a line);
- instruction words are decoded in the compiled code from the program's bytes by
  `decode_chunk` (the analytic engine's decoder too), with per-opcode field tables built
  from `gemmstone.isa.table` (a word the tables reject is decoded again by
  `gemmstone.isa.encoding.decode`, which raises the exact error).

Compiled functions are cached on disk (numba ``cache=True``) in `CACHE_DIR`,
``performance_core-<core_key>`` under ``NUMBA_CACHE_DIR`` if set, else under
``~/.cache/gemmstone/numba`` (a new temporary directory if neither can be written), so a
clone's source tree stays clean. The key hashes the constants the compiled code takes from
other files (instruction table, model and memory constants), which numba does not watch.
The first call with a cold cache (a new clone or a changed file) compiles for about 30 s
of CPU; later processes load the cache in about 0.4 s.

Speed (benchmarks/perf_speed.py --no-rtl, 20 ResNet-18 convs on 32x32: 55.7k
instructions, 3.33 M cycles): about 20-35 ms of CPU, 350-600 ns per instruction as the
shared machine's load goes; about 1.3x the core before the rings and the inlining above
(the same programs, both cores in one process, alternating: 343 against 449 ns per
instruction at best) and some 150x the reference. Per instruction the core handles about
5.6 events, 2.9 bursts the read channel's actor accepts one by one (each fetched word, a
command's first and last lines, lines while two clients read) and 23 lines of lone
streams (a sixth of them in steady-state jumps). A stream is cut at every event of
another actor, about 33 lines apart on ResNet-18's conv1, so the closed form rarely
reaches far: the events and the lines between them are the cost.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import NoReturn

import numba
import numpy as np
from numba import njit
from numba.core import caching as numba_caching

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.encoding import decode
from gemmstone.isa.errors import ProgramEndError, TokenError
from gemmstone.isa.table import (
    BY_OPCODE,
    OPCODE_FIELD,
    TOKEN_FIELDS,
    WORD_BYTES,
    AccLoadType,
    StoreMode,
    Unit,
    isa_hash,
)
from gemmstone.sim.performance import (
    ALU_LATENCY,
    FETCH_FIFO_DEPTH,
    FIFO_LATENCY,
    OUTPUT_STAGE_LATENCY,
    WRITE_RESPONSES,
)
from gemmstone.sim.performance_memory import READER_LINES_IN_FLIGHT, MemoryTiming

#: What the analytic engine takes from this module besides the functions of a run: the
#: decoder and its row layout, and a run's result codes.
SHARED = ("KINDS", "K_LOAD", "K_LOADACC", "K_LOADQ", "K_STORE", "K_CONFIG", "K_PRELOAD",
          "K_MATMUL", "K_ALU", "K_FENCE", "K_HALT", "FIELDS", "F_N", "F_PAD_LO", "F_PAD_HI",
          "F_DRAM", "F_STRIDE", "F_LEN", "F_K", "F_TYPE", "F_MODE", "F_KIND", "F_ACTOR",
          "F_FLAGS", "ROW_COLUMNS", "DECODE_TABLES", "decode_chunk", "preload_end", "OK",
          "BAD_WORD",
          "PROGRAM_END", "TOKENS_LEFT", "DEADLOCK_EMPTY", "DEADLOCK", "READER_BUSY")
__all__ = ["run_compiled", "words_to_code", "run_params", "checked_code", "raise_status",
           "core_key", "cache_dir", "cache_roots", "use_cache_dir", "CACHE_DIR", *SHARED]

_WORD_MASK = (1 << 128) - 1
_LOW_MASK = (1 << 64) - 1

# -- decoded rows and decode tables: the layout shared with performance_analytic -------------
#
# Both compiled engines decode with `decode_chunk` (the exact one a whole program up front,
# the analytic one a chunk at a time into a ring) and read a decoded word's row by the names
# of `SHARED`: they are this module's interface to `gemmstone.sim.performance_analytic`,
# which compiles them in (its numba cache key hashes this file's source). All else here
# that starts with an underscore is the exact engine's own.

#: Instruction kinds the model tells apart (a row's `F_KIND`), named by their mnemonics.
KINDS = ("load", "loadacc", "loadq", "store", "config", "preload", "matmul", "alu",
         "fence", "halt")
K_LOAD, K_LOADACC, K_LOADQ, K_STORE, K_CONFIG, K_PRELOAD, K_MATMUL, K_ALU, \
    K_FENCE, K_HALT = range(len(KINDS))
#: Operand fields the model reads: the first columns of a decoded row (0 where the
#: instruction has no such field; enum fields as their integer values).
FIELDS = ("n", "pad_lo", "pad_hi", "dram", "stride", "len", "k", "type", "mode")
F_N, F_PAD_LO, F_PAD_HI, F_DRAM, F_STRIDE, F_LEN, F_K, F_TYPE, F_MODE = \
    range(len(FIELDS))
#: Then the kind, the actor (1 load, 2 compute, 3 store unit; -1 fence and halt, which
#: dispatch runs) and the token flags (pop_prev 1, pop_next 2, push_prev 4, push_next 8).
F_KIND, F_ACTOR, F_FLAGS = range(len(FIELDS), len(FIELDS) + 3)
#: Columns of a decoded row (`decode_chunk` writes these; a wider array may hold more).
ROW_COLUMNS = len(FIELDS) + 3
# The exact engine's rows add the word's position in its unit's queue.
_F_POSITION = ROW_COLUMNS
_COLUMNS = ROW_COLUMNS + 1


def _signed64(value: int) -> int:
    """A 64-bit pattern as the int64 numba sees."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _half_shift_mask(opcode: int, name: str, lsb: int, width: int) -> tuple[int, int, int]:
    """Where a field lies: (half of the word, 0 low or 1 high; shift in that half; mask).
    A field read from one half is one shift and one mask, none of the ISA's straddles the
    halves (checked: the decoder relies on it)."""
    if lsb + width <= 64:
        return 0, lsb, (1 << width) - 1
    if lsb >= 64:
        return 1, lsb - 64, (1 << width) - 1
    raise AssertionError(f"field {name} of opcode {opcode} straddles the halves of a word")


def _decode_tables() -> tuple[np.ndarray, ...]:
    """`DECODE_TABLES` from `gemmstone.isa.table`. An opcode's fields and enum fields are
    listed in order, each (column or -1, half, shift, mask) and (half, shift, mask,
    allowed values as bits) and ended by -1 in the first entry: a word's decode reads only
    its own fields (at most six of the nine)."""
    opcodes = 1 << OPCODE_FIELD.width
    kind = np.full(opcodes, -1, np.int64)          # -1: reserved opcode
    actor = np.full(opcodes, -1, np.int64)
    reserved = np.zeros((opcodes, 2), np.int64)    # reserved bits, low and high word
    tokens = np.zeros(opcodes, np.int64)           # token flags the unit may set
    max_enums = max(sum(f.is_enum for f in spec.all_fields) for spec in BY_OPCODE.values())
    fields = np.full((opcodes, len(FIELDS) + 1, 4), -1, np.int64)
    enums = np.full((opcodes, max_enums + 1, 4), -1, np.int64)
    actors = {Unit.LOAD: 1, Unit.COMPUTE: 2, Unit.STORE: 3}
    for opcode, spec in BY_OPCODE.items():
        kind[opcode] = KINDS.index(spec.mnemonic)
        actor[opcode] = actors.get(spec.unit, -1)
        for bit, flag in enumerate(TOKEN_FIELDS):
            if spec.unit.allows(flag.name):
                tokens[opcode] |= 1 << bit
        mask = 0
        present = []
        enum_fields = []
        for f in spec.all_fields:
            if f.kind == "reserved":
                mask |= ((1 << f.width) - 1) << f.lsb
            elif f.is_enum:
                allowed = sum(1 << int(member) for member in f.kind)
                enum_fields.append((*_half_shift_mask(opcode, f.name, f.lsb, f.width),
                                    allowed))
            if f.name in FIELDS:
                present.append((FIELDS.index(f.name),
                                *_half_shift_mask(opcode, f.name, f.lsb, f.width)))
        for j, entry in enumerate(present):
            fields[opcode, j] = entry
        for j, entry in enumerate(enum_fields):
            enums[opcode, j] = entry
        reserved[opcode] = (_signed64(mask & (2**64 - 1)), _signed64(mask >> 64))
    return kind, actor, reserved, tokens, fields, enums


#: The tables `decode_chunk` decodes by: per opcode its kind (-1: reserved opcode), actor,
#: reserved bits (low and high half of the word), allowed token flags, the fields of
#: `FIELDS` it has and its enum fields (`_decode_tables`).
DECODE_TABLES = _decode_tables()
# Globals, so numba compiles them into `decode_chunk` as constants (a change to the ISA
# table is a new `core_key`, so a new cache) instead of the engines passing six arrays
# through their hot loops: the analytic engine ran ~3% slower with them as arguments, ~5%
# faster without (same-process A/B on ResNet-18's convolutions).
_KIND_OF, _ACTOR_OF, _RESERVED, _TOKENS, _FIELD_TABLE, _ENUM_TABLE = DECODE_TABLES
_TOKEN_LSB = TOKEN_FIELDS[0].lsb
assert [f.name for f in TOKEN_FIELDS] == ["pop_prev", "pop_next", "push_prev", "push_next"]
assert int(AccLoadType.INT8) == 1 and int(StoreMode.INT32) == 1

# -- model constants (those of gemmstone.sim.performance) ----------------------------------

_INF = 1 << 62
_NONE = -1            # an actor's "yield None"
_STOP = -2            # the front end returned (halt)
_FIFO_DEPTH = FETCH_FIFO_DEPTH
_OUTPUT_LATENCY = OUTPUT_STAGE_LATENCY
_ALU_LATENCY = ALU_LATENCY
_FIFO_LATENCY = FIFO_LATENCY
_RESPONSES = WRITE_RESPONSES
_FETCH, _LOAD, _COMPUTE, _STORE, _MEMORY = range(5)
_POP_PREV, _POP_NEXT, _PUSH_PREV, _PUSH_NEXT = 1, 2, 4, 8
# Token queues in the reference's order: producer, its push flag, consumer, its pop flag.
_Q_PRODUCER = (_LOAD, _COMPUTE, _COMPUTE, _STORE)
_Q_PUSH = (_PUSH_NEXT, _PUSH_PREV, _PUSH_NEXT, _PUSH_PREV)
_Q_CONSUMER = (_COMPUTE, _LOAD, _STORE, _COMPUTE)
_Q_POP = (_POP_PREV, _POP_NEXT, _POP_PREV, _POP_NEXT)
_QUEUE_NAMES = ("load->compute", "compute->load", "compute->store", "store->compute")
# Token queue counts (columns of `tc`).
_T_PUSHED, _T_PENDING, _T_PROMISED, _T_POPPED = range(4)
# Event slots (rows of `ev`).
_E_TIME, _E_SEQ, _E_LIVE, _E_BLOCKED = range(4)
# Scalars shared by the helpers (`g`).
(_G_NOW, _G_SEQ, _G_FE_WORD, _G_FE_UNIT, _G_FE_IDLE, _G_FE_FETCH, _G_GRANT, _G_NEXT_AR,
 _G_DATA_END, _G_BEATS, _G_STALL_TOKEN, _G_STALL_DMA, _G_ERROR, _G_BURSTS, _G_DMA_TAKES,
 _G_DMA_COVERED) = range(16)
_GLOBALS = 16
# Read command slots, one per client (rows of `rc`).
(_C_ACTIVE, _C_EXISTS, _C_LINES, _C_READY, _C_DONE, _C_LAST_AR, _C_LAST_END, _C_PREV_END,
 _C_FIRST_TAKE, _C_OWNER, _C_PERIOD, _C_HELD, _C_PHASE, _C_BURSTS, _C_WINDOW) = range(15)
_SLOTS = 15
# Per unit (rows of `unit_state`, columns 1..3 = actors).
_U_QUEUED, _U_TAKEN, _U_SETTLED, _U_IDLE_FROM, _U_RETIRED, _U_BUSY = range(6)
# Per load (rows of `loads`).
_L_TAKE, _L_HANDOFF, _L_RETIRE = range(3)
# Result codes.
OK, BAD_WORD, PROGRAM_END, TOKENS_LEFT, DEADLOCK_EMPTY, DEADLOCK, READER_BUSY = range(7)


# -- where numba caches the compiled functions ------------------------------------------------

def core_key() -> str:
    """Short hash of what the compiled functions take from other files as compile-time
    constants (numba only sees changes to this file itself): the instruction table and the
    model and memory constants. Part of the cache directory's name, so a change elsewhere
    gets a fresh compile instead of a stale cached one."""
    parts = (isa_hash(), WORD_BYTES, OPCODE_FIELD.lsb, OPCODE_FIELD.width, _TOKEN_LSB,
             READER_LINES_IN_FLIGHT, _FIFO_DEPTH, _OUTPUT_LATENCY, _ALU_LATENCY,
             _FIFO_LATENCY, _RESPONSES, numba.__version__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def cache_dir(roots) -> Path:
    """``performance_core-<core_key>`` under the first of ``roots`` where it can be created
    and written, else a new temporary directory (removed at exit; each process then compiles
    again, but importing never fails for want of a cache)."""
    name = f"performance_core-{core_key()}"
    for root in roots:
        path = Path(root) / name
        try:
            path.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=path).close()
        except OSError:
            continue
        return path
    # A private new directory, not a fixed name in the shared temporary directory: numba
    # loads machine code from its cache, which nobody else must be able to plant.
    path = Path(tempfile.mkdtemp(prefix="gemmstone-numba-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def cache_roots() -> list[Path]:
    """Where compiled engines keep their numba caches, first choice first:
    ``NUMBA_CACHE_DIR`` if set, then ``~/.cache/gemmstone/numba`` (`cache_dir` takes the
    first it can write)."""
    roots = [Path(numba.config.CACHE_DIR)] if numba.config.CACHE_DIR else []
    with contextlib.suppress(RuntimeError):  # no home directory
        roots.append(Path.home() / ".cache" / "gemmstone" / "numba")
    return roots


CACHE_DIR = cache_dir(cache_roots())


class _CoreCacheLocator(numba_caching.UserProvidedCacheLocator):
    """Numba cache locator for the files given to `use_cache_dir` only: their directory
    (other functions in the process keep numba's own choice)."""

    #: The cache directory of each file (absolute path) whose functions it places.
    directories: dict[str, str] = {}

    def __init__(self, py_func, py_file) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = self.directories[os.path.abspath(py_file)]

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) not in cls.directories:
            return None
        return cls(py_func, py_file)


def use_cache_dir(py_file: str, directory: Path) -> None:
    """Have numba cache the compiled functions of the module ``py_file`` (its ``__file__``)
    in ``directory`` (`cache_dir`). Call it before the module's first ``@njit(cache=True)``:
    numba picks a function's cache when the decorator is applied."""
    _CoreCacheLocator.directories[os.path.abspath(py_file)] = str(directory)


# Numba picks a locator per function when it is decorated (below), from this class list
# (NUMBA_CACHE_LOCATOR_CLASSES replaces it for the whole process); it has no per-function
# hook, and setting numba.config.CACHE_DIR would move the cache of every numba function in
# the process. If the list is gone (another numba), fall back to that, but only when the
# user has not chosen a directory with NUMBA_CACHE_DIR: their choice then stands for every
# function (ours lose the key in the path, and numba only watches this file).
_LOCATORS = getattr(getattr(numba_caching, "CacheImpl", None), "_locator_classes", None)
if isinstance(_LOCATORS, list):
    _LOCATORS[:] = [cls for cls in _LOCATORS if cls.__name__ != _CoreCacheLocator.__name__]
    _LOCATORS.insert(0, _CoreCacheLocator)
elif not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = str(CACHE_DIR)
use_cache_dir(__file__, CACHE_DIR)


# -- small helpers ----------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def decode_chunk(code, start, stop, ins, row0):
    """Decode words ``start`` .. ``stop - 1`` of ``code`` (`words_to_code`) into rows
    ``row0`` on of ``ins``: their first `ROW_COLUMNS` columns (`FIELDS`, `F_KIND`,
    `F_ACTOR`, `F_FLAGS`); further columns are left as they are.

    The tables are `DECODE_TABLES`, compiled in as constants. A word is rejected for what
    makes `gemmstone.isa.encoding.decode` raise: a reserved opcode, a reserved bit set, an
    enum field's value with no member, a token flag naming a neighbour its unit lacks
    (which error, and its message, is the caller's to get from that decoder). No
    allocation: the analytic engine calls it from a loop with numba's reference counting
    off.

    Returns
    -------
    int
        The index of the first word rejected (the rows before it are written), or -1.
    """
    for i in range(start, stop):
        lo = code[2 * i]
        hi = code[2 * i + 1]
        # Unsigned indices: numba then drops its fix-up for negative ones.
        opcode = np.uint64(lo & 15)
        kind = _KIND_OF[opcode]
        if kind < 0 or (lo & _RESERVED[opcode, 0]) != 0 or (hi & _RESERVED[opcode, 1]) != 0:
            return i
        for j in range(_ENUM_TABLE.shape[1]):
            half = _ENUM_TABLE[opcode, j, 0]
            if half < 0:
                break
            value = ((hi if half else lo) >> _ENUM_TABLE[opcode, j, 1]) & _ENUM_TABLE[opcode, j, 2]
            if not (_ENUM_TABLE[opcode, j, 3] >> value) & 1:
                return i
        flags = (lo >> _TOKEN_LSB) & 15
        if flags & ~_TOKENS[opcode]:
            return i
        row = ins[row0 + i - start]
        for f in range(len(FIELDS)):
            row[f] = 0
        for j in range(_FIELD_TABLE.shape[1]):
            f = _FIELD_TABLE[opcode, j, 0]
            if f < 0:
                break
            half = hi if _FIELD_TABLE[opcode, j, 1] else lo
            row[np.uint64(f)] = (half >> _FIELD_TABLE[opcode, j, 2]) & _FIELD_TABLE[opcode, j, 3]
        row[F_KIND] = kind
        row[F_ACTOR] = _ACTOR_OF[opcode]
        row[F_FLAGS] = flags
    return -1


@njit(cache=True, _nrt=False, inline="always")
def preload_end(take, k, push_next, last_back, matmul_last, drain_end, bank_ready):
    """The last cycle of a PRELOAD of ``k`` weight rows taken at ``take`` (both compiled
    engines' timing of it, `_Run`'s in Python): it writes the back bank, whose last input
    row entered the array at ``last_back`` (-1: none yet), from two cycles on and
    ``bank_ready`` cycles after that row; it ends no earlier than a MATMUL still streaming
    (its last row at ``matmul_last``); and with ``push_next`` not before the array has
    drained (``drain_end``): its push must not overtake the rows of earlier matmuls."""
    first = take + 2
    if last_back >= 0:
        first = max(first, last_back + bank_ready)
    streaming_until = matmul_last + 1 if matmul_last >= take else 0
    end = max(first + k - 1, streaming_until)
    if push_next:
        end = max(end, drain_end + 1)
    return end


@njit(cache=True, _nrt=False)
def _schedule(ev, g, actor, time):
    g[_G_SEQ] += 1
    ev[_E_SEQ, actor] = g[_G_SEQ]
    ev[_E_TIME, actor] = time
    ev[_E_LIVE, actor] = 1
    ev[_E_BLOCKED, actor] = 0


@njit(cache=True, _nrt=False)
def _wake(ev, g, actor):
    if ev[_E_BLOCKED, actor]:
        _schedule(ev, g, actor, g[_G_NOW])


@njit(cache=True, _nrt=False)
def _horizon(ev):
    best = _INF
    for actor in range(5):
        if ev[_E_LIVE, actor] and ev[_E_TIME, actor] < best:
            best = ev[_E_TIME, actor]
    return best


@njit(cache=True, _nrt=False)
def _pow2_at_least(size):
    """The smallest power of two >= ``size``: the capacity of an ends ring."""
    capacity = 1
    while capacity < size:
        capacity *= 2
    return capacity


@njit(cache=True, _nrt=False)
def _end_before(ends, count, back):
    """The ``back``-th last of ``count`` burst ends recorded in the ring ``ends`` (a power of
    two long, entry ``i`` at ``i & (len - 1)``, at least ``back``, -_INF where never
    written): the first item of a deque with a maxlen of ``back`` once it is full, -_INF
    before. The count lives with the caller, so recording an end is one store, without
    a start and a length to keep up to date."""
    return ends[(count - back) & (ends.shape[0] - 1)]


@njit(cache=True)
def _union(starts, ends, count):
    """Cycles covered by the half-open intervals [starts[i], ends[i]), i < count."""
    ordered = True
    for j in range(1, count):
        if starts[j] < starts[j - 1]:
            ordered = False
            break
    # Spans mostly arrive in order: sort only when they did not.
    order = np.arange(count) if ordered else np.argsort(starts[:count])
    total = 0
    reach = -_INF
    for j in range(count):
        start = starts[order[j]]
        end = ends[order[j]]
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


@njit(cache=True, _nrt=False)
def _token_ready(unit, flags, depth, tc, pushes, pops):
    ready = 0
    for q in range(4):
        if _Q_CONSUMER[q] == unit and flags & _Q_POP[q]:
            needed = tc[q, _T_POPPED]
            if needed >= tc[q, _T_PUSHED]:
                return -1
            ready = max(ready, pushes[q, needed] + 1)
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            needed = tc[q, _T_PROMISED] - depth
            if needed >= 0:
                if needed >= tc[q, _T_POPPED]:
                    return -1
                ready = max(ready, pops[q, needed] + 1)
    return ready


@njit(cache=True, _nrt=False)
def _token_wait(unit, flags, structural, gate, now, depth, tc, pushes, pops, spans, g):
    """The head instruction of ``unit`` waits for its tokens and for ``structural``: the
    cycle to wake at (``_NONE`` while a token is missing), or ``now`` when it can be taken,
    with the token stall since ``gate`` counted (`_Run._wait_head`)."""
    ready = _token_ready(unit, flags, depth, tc, pushes, pops)
    if ready < 0:
        return _NONE
    take = max(structural, ready)
    if take > now:
        return take
    if ready > gate and take > gate:
        _stall(spans, g, _G_STALL_TOKEN, gate, min(ready, take))
    return now


@njit(cache=True, _nrt=False)
def _take(unit, flags, time, us, takes, tc, pops, ev, g):
    takes[unit, us[_U_TAKEN, unit]] = time
    us[_U_TAKEN, unit] += 1
    for q in range(4):
        if _Q_CONSUMER[q] == unit and flags & _Q_POP[q]:
            pops[q, tc[q, _T_POPPED]] = time
            tc[q, _T_POPPED] += 1
            _wake(ev, g, _Q_PRODUCER[q])
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            tc[q, _T_PROMISED] += 1
            tc[q, _T_PENDING] += 1
    if unit == g[_G_FE_UNIT]:
        _wake(ev, g, _FETCH)


@njit(cache=True, _nrt=False)
def _push(unit, flags, time, tc, pushes, ev, g):
    for q in range(4):
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            tc[q, _T_PENDING] -= 1
            j = tc[q, _T_PUSHED]
            while j > 0 and pushes[q, j - 1] > time:   # insort (right)
                pushes[q, j] = pushes[q, j - 1]
                j -= 1
            pushes[q, j] = time
            tc[q, _T_PUSHED] += 1
            _wake(ev, g, _Q_CONSUMER[q])


@njit(cache=True, _nrt=False)
def _settle(unit, idle, us, ev, g):
    us[_U_SETTLED, unit] += 1
    us[_U_IDLE_FROM, unit] = max(us[_U_IDLE_FROM, unit], idle)
    if g[_G_FE_IDLE]:
        _wake(ev, g, _FETCH)


@njit(cache=True, _nrt=False)
def _busy(unit, first, last, us, busy):
    if last >= first:
        count = us[_U_BUSY, unit]
        busy[unit, count, 0] = first
        busy[unit, count, 1] = last + 1
        us[_U_BUSY, unit] = count + 1


@njit(cache=True, _nrt=False)
def _stall(spans, g, slot, start, end):
    count = g[slot]
    spans[count, 0] = start
    spans[count, 1] = end
    g[slot] = count + 1


@njit(cache=True, _nrt=False, inline="always")
def _dma_opens(client, start, rc, in_flight, counted, g):
    """`_Run._dma_opens`: the window of ``client``'s new command starts at ``start``; the
    lines of other units still in flight taken from then on fall into it. ``counted``
    holds, in the slots of ``in_flight``, the ends of lines that count no more."""
    rc[_C_WINDOW, client] = start
    mask = in_flight.shape[1] - 1
    for other in range(1, 4):
        if other == client:
            continue
        last = rc[_C_BURSTS, other] - 1
        for j in range(last, last - READER_LINES_IN_FLIGHT, -1):
            end = in_flight[other, j & mask]
            if end + 1 < start:
                break
            if counted[other, j & mask] != end:
                counted[other, j & mask] = end
                g[_G_DMA_COVERED] += 1


@njit(cache=True, _nrt=False, inline="always")
def _submit(rc, steps, g, client, accepted, lines, addr, stride, length, bus, first_take,
            owner):
    """A new read command of ``client`` (`ReadCommand` and `line_pattern`)."""
    if rc[_C_ACTIVE, client]:
        g[_G_ERROR] = READER_BUSY
        return
    length = max(1, length)
    # The bus is a power of two bytes (AcceleratorConfig checks it): masks instead of
    # divisions, and the gcd of the stride and the bus is the stride's lowest set bit.
    offset = addr & (bus - 1)
    rest = stride & (bus - 1)
    period = bus // (rest & -rest) if rest else 1
    whole = (length - 1) // bus
    part = (length - 1) & (bus - 1)
    start = offset
    for i in range(period):   # beats of (start + length - 1) // bus + 1, no division
        steps[client, i] = whole + 1 + (1 if start + part >= bus else 0)
        start += rest
        if start >= bus:
            start -= bus
    rc[_C_PERIOD, client] = period
    rc[_C_PHASE, client] = 0
    rc[_C_ACTIVE, client] = 1
    rc[_C_EXISTS, client] = 1
    rc[_C_LINES, client] = lines
    rc[_C_READY, client] = accepted + 1
    rc[_C_DONE, client] = 0
    rc[_C_LAST_AR, client] = -1
    rc[_C_LAST_END, client] = -1
    rc[_C_PREV_END, client] = -1
    rc[_C_FIRST_TAKE, client] = first_take
    rc[_C_OWNER, client] = owner


# -- the run ---------------------------------------------------------------------------------

@njit(cache=True)
def _simulate(code, params):
    """Run a whole program. ``params``: rows, cols, token_depth, queue_depth, bus,
    instr_base, window_base, grant, then the `MemoryTiming` fields. Returns (status, info,
    extra, counters, grant)."""
    bus, read_ahead, write_ahead = params[4], params[9], params[11]
    counters = np.zeros(12, np.int64)
    count = code.shape[0] // 2
    ins = np.empty((count, _COLUMNS), np.int64)
    bad = decode_chunk(code, 0, count, ins, 0)
    if bad >= 0:
        return BAD_WORD, bad, 0, counters, 0

    size = count + 1
    g = np.zeros(_GLOBALS, np.int64)
    g[_G_GRANT] = params[7]
    g[_G_DATA_END] = -1
    g[_G_FE_WORD] = -1
    g[_G_FE_UNIT] = -1
    ev = np.zeros((4, 5), np.int64)
    us = np.zeros((6, 4), np.int64)
    # Each unit's words in order, and each word's place among them (the analytic engine
    # counts places as it dispatches, so the shared decoder leaves them out).
    units = np.empty((4, size), np.int64)
    queued = np.zeros(4, np.int64)
    for i in range(count):
        actor = ins[i, F_ACTOR]
        if actor >= 0:
            units[actor, queued[actor]] = i
            ins[i, _F_POSITION] = queued[actor]
            queued[actor] += 1
        else:
            ins[i, _F_POSITION] = -1
    takes = np.empty((4, size), np.int64)
    dispatched = np.full(size, -1, np.int64)
    word_end = np.full(size, -1, np.int64)
    tc = np.zeros((4, 4), np.int64)
    pushes = np.empty((4, size), np.int64)
    pops = np.empty((4, size), np.int64)
    busy = np.empty((4, size, 2), np.int64)
    stall_token = np.empty((2 * size, 2), np.int64)
    stall_dma = np.empty((size, 2), np.int64)
    loads = np.empty((3, size), np.int64)
    rc = np.zeros((_SLOTS, 4), np.int64)
    rc[_C_HELD, :] = -1
    steps = np.zeros((4, bus), np.int64)
    # Burst ends of the channel (`ReadChannel.recent`, and the window a steady-state
    # check compares) and of each client (`ReadChannel.in_flight`), counted in
    # g[_G_BURSTS] and rc[_C_BURSTS]; handshakes of a stream (one period back).
    window_lines = max(read_ahead, READER_LINES_IN_FLIGHT)
    # They start at -_INF: the entry a gate reads before a ring has seen enough bursts
    # (a deque not full yet) is then one never written, and holds back nothing.
    history = np.full(_pow2_at_least(window_lines + bus + 2), -_INF, np.int64)
    in_flight = np.full((4, _pow2_at_least(READER_LINES_IN_FLIGHT)), -_INF, np.int64)
    counted = np.full(in_flight.shape, -1, np.int64)
    s_handshakes = np.zeros(_pow2_at_least(bus + 2), np.int64)
    # The store unit's last write bursts, write responses and rows out of the output stage
    # (`_Run._store_unit`'s deques), rings like `history`.
    w_recent = np.full(_pow2_at_least(max(1, write_ahead)), -_INF, np.int64)
    responses = np.full(_pow2_at_least(_RESPONSES), -_INF, np.int64)
    stage_out = np.full(_pow2_at_least(_OUTPUT_LATENCY), -_INF, np.int64)
    status, info, extra, cycles, stall_queue, bytes_written = _events(
        params, ins, units, takes, dispatched, word_end, tc, pushes, pops, busy, stall_token,
        stall_dma, loads, rc, steps, history, in_flight, counted, s_handshakes, w_recent,
        responses, stage_out, g, ev, us)
    if status != OK:
        return status, info, extra, counters, 0
    counters[0] = cycles
    for u in range(1, 4):
        counters[u] = _union(busy[u, :, 0], busy[u, :, 1], us[_U_BUSY, u])
    counters[4] = _union(stall_token[:, 0], stall_token[:, 1], g[_G_STALL_TOKEN])
    counters[5] = _union(stall_dma[:, 0], stall_dma[:, 1], g[_G_STALL_DMA]) \
        - g[_G_DMA_TAKES] + g[_G_DMA_COVERED]
    counters[6] = stall_queue
    counters[7] = g[_G_BEATS] * bus
    counters[8] = bytes_written
    for u in range(1, 4):
        counters[8 + u] = us[_U_RETIRED, u]
    return OK, 0, 0, counters, g[_G_GRANT]


# NRT off: no reference counting of the arrays in the hot loop (they are allocated and
# owned by `_simulate`); it would cost more than the model's own arithmetic.
@njit(cache=True, _nrt=False)
def _events(params, ins, units, takes, dispatched, word_end, tc, pushes, pops, busy,
            stall_token, stall_dma, loads, rc, steps, history, in_flight, counted,
            s_handshakes, w_recent, responses, stage_out, g, ev, us):
    """The event loop over every actor. Returns (status, info, extra, cycles, queue
    stall cycles, bytes written)."""
    rows, cols, token_depth, queue_depth, bus = params[0], params[1], params[2], params[3], \
        params[4]
    instr_base, window = params[5], params[6]
    write_ahead, write_slack, write_response, write_latency = params[11], params[12], \
        params[13], params[14]
    count = ins.shape[0]
    stall_queue = 0
    bytes_written = 0
    cycles = -1
    i = flags = kind = n = take = finish = 0
    # Front end (fetch and dispatch).
    fe_pc = 0
    asked = 0
    read_before = 0     # words dispatched before the last fetch command's cycle
    fetch_free = 1
    last_fetch = False
    index = 0
    earliest = 0
    idle_start = 0
    # Load unit.
    ld_pc = 0
    ld_front_free = 0
    ld_position = 0
    ld_gate = 0
    ld_accepted = 0
    # Compute unit.
    cu_pc = 0
    pipe = 2 + rows + cols
    bank_ready = rows + cols - 2
    cu_fsm_free = 0
    loader_free = 0
    drain_end = -1
    front = 0
    last_input0 = -1
    last_input1 = -1
    matmul_last = -1
    preload_from = 0
    cu_position = 0
    cu_structural = 0
    cu_gate = 0
    cu_take = 0
    cu_accepted = 0
    # Store unit.
    st_pc = 0
    st_fsm_free = 0
    output_empty = 0
    aw_free = 0
    aw_next = 0
    w_end = -1
    line_free = -1
    path_raw = False
    st_position = 0
    bursts_written = answers = rows_out = 0   # counts of the store unit's rings
    st_structural = 0
    st_gate = 0
    st_take = 0
    st_accepted = 0

    for actor in range(5):
        _schedule(ev, g, actor, 0)
    while True:
        actor = -1
        time = _INF
        seq = _INF
        for a in range(5):
            if ev[_E_LIVE, a] and (ev[_E_TIME, a] < time
                                   or (ev[_E_TIME, a] == time and ev[_E_SEQ, a] < seq)):
                actor, time, seq = a, ev[_E_TIME, a], ev[_E_SEQ, a]
        if actor < 0:
            break
        ev[_E_LIVE, actor] = 0
        g[_G_NOW] = time
        wanted = _NONE

        if actor == _FETCH:
            while True:
                now = g[_G_NOW]
                if fe_pc == 2:      # back from the loop's yield
                    g[_G_FE_WORD] = -1
                    g[_G_FE_UNIT] = -1
                    g[_G_FE_FETCH] = 0
                    fe_pc = 0
                if fe_pc == 1:      # waiting for idle units (fence, halt)
                    g[_G_FE_IDLE] = 0
                    settled = True
                    for u in range(1, 4):
                        if us[_U_SETTLED, u] != us[_U_QUEUED, u]:
                            settled = False
                    if not settled:
                        g[_G_FE_IDLE] = 1
                        wanted = _NONE
                        break
                    settle = max(idle_start, us[_U_IDLE_FROM, 1], us[_U_IDLE_FROM, 2],
                                 us[_U_IDLE_FROM, 3])
                    if ins[index - 1, F_KIND] == K_HALT:
                        left = 0
                        for q in range(4):
                            if tc[q, _T_PUSHED] + tc[q, _T_PENDING] > tc[q, _T_POPPED]:
                                left |= 1 << q
                        if left:
                            return TOKENS_LEFT, index - 1, left, 0, 0, 0
                        fetch_quiet = -_INF
                        for i in range(count):
                            if word_end[i] >= 0 and word_end[i] > fetch_quiet:
                                fetch_quiet = word_end[i]
                        cycles = max(settle + 1, fetch_quiet + 2) + 1
                        wanted = _STOP
                        break
                    earliest = settle + 1
                    fe_pc = 0
                    continue
                # fe_pc == 0: the loop's body.
                fetch_at = _INF
                if asked < count:
                    if last_fetch and rc[_C_LAST_AR, _FETCH] >= 0:
                        fetch_free = max(fetch_free, rc[_C_LAST_AR, _FETCH])
                        last_fetch = False
                    if not last_fetch:
                        if asked < _FIFO_DEPTH:
                            credit = 1
                        elif asked - _FIFO_DEPTH < index:
                            credit = dispatched[asked - _FIFO_DEPTH] + 1
                        else:
                            credit = _INF
                        fetch_at = max(fetch_free, credit)
                        if fetch_at <= now:
                            # bisect_left(dispatched, now, 0, index): words are dispatched
                            # in order and time only grows, so the answer only grows too.
                            while read_before < index and dispatched[read_before] < now:
                                read_before += 1
                            ask = min(count, read_before + _FIFO_DEPTH) - asked
                            _submit(rc, steps, g, _FETCH, now, ask,
                                    instr_base + asked * WORD_BYTES, WORD_BYTES, WORD_BYTES,
                                    bus, -1, asked)
                            _wake(ev, g, _MEMORY)
                            last_fetch = True
                            asked += ask
                            fetch_at = _INF
                dispatch_at = _INF
                if index >= count:
                    return PROGRAM_END, count, 0, 0, 0, 0
                if word_end[index] >= 0:
                    visible = word_end[index] + 1 + _FIFO_LATENCY
                    if index:
                        visible = max(visible, dispatched[index - 1] + 1)
                    unit = ins[index, F_ACTOR]
                    ready = max(visible, earliest)
                    if unit >= 0:
                        position = ins[index, _F_POSITION]
                        if position >= queue_depth:
                            if position - queue_depth < us[_U_TAKEN, unit]:
                                ready = max(ready, takes[unit, position - queue_depth] + 1)
                            else:
                                ready = _INF
                                g[_G_FE_UNIT] = unit
                    if ready <= now:
                        dispatched[index] = now
                        stall_queue += now - visible
                        index += 1
                        if unit >= 0:
                            us[_U_QUEUED, unit] += 1
                            _wake(ev, g, unit)
                        else:
                            idle_start = now + 1
                            fe_pc = 1
                        continue
                    dispatch_at = ready
                else:
                    g[_G_FE_WORD] = index
                wanted = min(fetch_at, dispatch_at)
                if wanted == _INF:
                    g[_G_FE_FETCH] = last_fetch and asked < count and (
                        asked < _FIFO_DEPTH or asked - _FIFO_DEPTH < index)
                    wanted = _NONE
                fe_pc = 2
                break

        elif actor == _LOAD:
            while True:
                now = g[_G_NOW]
                if ld_pc == 0:
                    if ld_position >= us[_U_QUEUED, _LOAD]:
                        wanted = _NONE
                        break
                    i = units[_LOAD, ld_position]
                    ld_gate = dispatched[i] + _FIFO_LATENCY
                    if ld_position:
                        ld_gate = max(ld_gate, takes[_LOAD, ld_position - 1] + 1)
                    ld_gate = max(ld_gate, ld_front_free)
                    ld_pc = 1
                i = units[_LOAD, ld_position]
                flags = ins[i, F_FLAGS]
                n = ins[i, F_N]
                if ld_pc == 1:
                    wanted = _token_wait(_LOAD, flags, ld_gate, ld_gate, now, token_depth,
                                         tc, pushes, pops, stall_token, g)
                    if wanted != now:
                        break
                    _take(_LOAD, flags, now, us, takes, tc, pops, ev, g)
                    loads[_L_TAKE, ld_position] = now
                    ld_accepted = now + 2
                    ld_pc = 2 if n else 4
                if ld_pc == 2:
                    if rc[_C_EXISTS, _LOAD] and rc[_C_LAST_AR, _LOAD] < 0:
                        wanted = _NONE
                        break
                    if rc[_C_EXISTS, _LOAD]:
                        ld_accepted = max(ld_accepted, rc[_C_LAST_AR, _LOAD])
                    ld_pc = 3
                if ld_pc == 3:
                    if now < ld_accepted:
                        wanted = ld_accepted
                        break
                    ld_pc = 4
                # ld_pc == 4: the back end must have retired the previous load.
                back_free = 0
                if ld_position:
                    retire = loads[_L_RETIRE, ld_position - 1]
                    if retire < 0:
                        wanted = _NONE
                        break
                    back_free = retire + 1
                handoff = max(ld_accepted + 1, back_free)
                data_start = handoff + 2 + ins[i, F_PAD_LO]
                loads[_L_HANDOFF, ld_position] = handoff
                loads[_L_RETIRE, ld_position] = -1
                ld_front_free = handoff + 1
                if n:
                    _submit(rc, steps, g, _LOAD, ld_accepted, n, window + ins[i, F_DRAM],
                            ins[i, F_STRIDE], ins[i, F_LEN], bus, data_start, ld_position)
                    _dma_opens(_LOAD, data_start, rc, in_flight, counted, g)
                    _wake(ev, g, _MEMORY)
                else:
                    retire = data_start + 1 + ins[i, F_PAD_HI]
                    loads[_L_RETIRE, ld_position] = retire
                    _busy(_LOAD, loads[_L_TAKE, ld_position] + 1, retire, us, busy)
                    us[_U_RETIRED, _LOAD] += 1
                    _push(_LOAD, flags, retire, tc, pushes, ev, g)
                    _settle(_LOAD, max(retire + 1, handoff + 1), us, ev, g)
                ld_position += 1
                ld_pc = 0

        elif actor == _COMPUTE:
            while True:
                now = g[_G_NOW]
                if cu_pc == 0:
                    if cu_position >= us[_U_QUEUED, _COMPUTE]:
                        wanted = _NONE
                        break
                    i = units[_COMPUTE, cu_position]
                    visible = dispatched[i] + _FIFO_LATENCY
                    if cu_position:
                        visible = max(visible, takes[_COMPUTE, cu_position - 1] + 1)
                    kind = ins[i, F_KIND]
                    if kind == K_PRELOAD:
                        cu_structural = max(visible, loader_free, preload_from)
                    elif kind == K_MATMUL and ins[i, F_N]:
                        cu_structural = max(visible, loader_free, cu_fsm_free)
                    else:
                        cu_structural = max(visible, loader_free, cu_fsm_free, drain_end + 1)
                    cu_gate = max(visible, cu_fsm_free)
                    cu_pc = 1
                i = units[_COMPUTE, cu_position]
                flags = ins[i, F_FLAGS]
                kind = ins[i, F_KIND]
                n = ins[i, F_N]
                if cu_pc == 1:
                    wanted = _token_wait(_COMPUTE, flags, cu_structural, cu_gate, now, token_depth,
                                         tc, pushes, pops, stall_token, g)
                    if wanted != now:
                        break
                    cu_take = now
                    _take(_COMPUTE, flags, now, us, takes, tc, pops, ev, g)
                    take = now
                    if kind == K_PRELOAD:
                        back = 1 - front
                        final = preload_end(take, ins[i, F_K], flags & _PUSH_NEXT,
                                            last_input1 if back else last_input0,
                                            matmul_last, drain_end, bank_ready)
                        loader_free = final + 1
                        front = back
                        _busy(_COMPUTE, take + 1, final, us, busy)
                        _push(_COMPUTE, flags, final, tc, pushes, ev, g)
                        cu_pc = 9
                    elif kind == K_MATMUL:
                        if n:
                            matmul_last = take + n
                            if front:
                                last_input1 = take + n + 1
                            else:
                                last_input0 = take + n + 1
                            cu_fsm_free = take + n + 1
                            drain_end = take + n + pipe
                            _push(_COMPUTE, flags, drain_end, tc, pushes, ev, g)
                        else:
                            matmul_last = take + 1
                            cu_fsm_free = take + 2
                            _push(_COMPUTE, flags, take + 1, tc, pushes, ev, g)
                        preload_from = take + 1
                        _busy(_COMPUTE, take + 1, matmul_last, us, busy)
                        cu_pc = 9
                    elif kind == K_ALU:
                        finish = take + 2 + _ALU_LATENCY + n if n else take + 2
                        cu_fsm_free = finish + 1
                        preload_from = finish + 1
                        _busy(_COMPUTE, take + 1, finish, us, busy)
                        _push(_COMPUTE, flags, finish, tc, pushes, ev, g)
                        cu_pc = 9
                    else:  # loadacc
                        cu_accepted = take + 2
                        if n:
                            cu_pc = 2
                        else:
                            finish = take + 2
                            cu_fsm_free = finish + 1
                            preload_from = finish + 1
                            _busy(_COMPUTE, take + 1, finish, us, busy)
                            _push(_COMPUTE, flags, finish, tc, pushes, ev, g)
                            cu_pc = 9
                if cu_pc == 2:
                    if rc[_C_EXISTS, _COMPUTE] and rc[_C_LAST_AR, _COMPUTE] < 0:
                        wanted = _NONE
                        break
                    if rc[_C_EXISTS, _COMPUTE]:
                        cu_accepted = max(cu_accepted, rc[_C_LAST_AR, _COMPUTE])
                    cu_pc = 3
                if cu_pc == 3:
                    if now < cu_accepted:
                        wanted = cu_accepted
                        break
                    size_of = 1 if ins[i, F_TYPE] == 1 else 4
                    _submit(rc, steps, g, _COMPUTE, cu_accepted, n, window + ins[i, F_DRAM],
                            ins[i, F_STRIDE], ins[i, F_LEN] * size_of, bus, -1, 0)
                    _dma_opens(_COMPUTE, cu_accepted + 1, rc, in_flight, counted, g)
                    _wake(ev, g, _MEMORY)
                    cu_pc = 4
                if cu_pc == 4:
                    if rc[_C_LAST_END, _COMPUTE] < 0:
                        wanted = _NONE
                        break
                    end = rc[_C_LAST_END, _COMPUTE]
                    finish = end + 1
                    drain_end = max(drain_end, end + 2)
                    cu_fsm_free = finish + 1
                    preload_from = finish + 1
                    _busy(_COMPUTE, cu_take + 1, finish, us, busy)
                    _push(_COMPUTE, flags, finish, tc, pushes, ev, g)
                    cu_pc = 9
                # cu_pc == 9: retired.
                us[_U_RETIRED, _COMPUTE] += 1
                _settle(_COMPUTE, max(cu_fsm_free, drain_end + 1, loader_free), us, ev, g)
                cu_position += 1
                cu_pc = 0

        elif actor == _STORE:
            while True:
                now = g[_G_NOW]
                if st_pc == 0:
                    if st_position >= us[_U_QUEUED, _STORE]:
                        wanted = _NONE
                        break
                    i = units[_STORE, st_position]
                    kind = ins[i, F_KIND]
                    visible = dispatched[i] + _FIFO_LATENCY
                    if st_position:
                        visible = max(visible, takes[_STORE, st_position - 1] + 1)
                    st_gate = max(visible, st_fsm_free)
                    switches = kind == K_STORE and (ins[i, F_MODE] == 1) != path_raw
                    if kind in (K_LOADQ, K_CONFIG) or switches:
                        st_structural = max(st_gate, output_empty)
                    else:
                        st_structural = st_gate
                    st_pc = 1
                i = units[_STORE, st_position]
                flags = ins[i, F_FLAGS]
                kind = ins[i, F_KIND]
                if st_pc == 1:
                    wanted = _token_wait(_STORE, flags, st_structural, st_gate, now, token_depth,
                                         tc, pushes, pops, stall_token, g)
                    if wanted != now:
                        break
                    take = now
                    st_take = take
                    if st_structural > st_gate and take > st_gate:
                        _stall(stall_token, g, _G_STALL_TOKEN, st_gate,
                               min(st_structural, take))
                    _take(_STORE, flags, take, us, takes, tc, pops, ev, g)
                    if kind == K_STORE:
                        path_raw = ins[i, F_MODE] == 1
                    if kind == K_CONFIG:
                        finish = take + 1
                        st_pc = 9
                    elif kind == K_LOADQ:
                        st_accepted = take + 2
                        st_pc = 2
                    elif ins[i, F_N] == 0:
                        finish = take + 2
                        if flags & _PUSH_PREV:
                            finish = max(finish + 1, output_empty)
                        st_pc = 9
                    else:
                        n = ins[i, F_N]
                        raw = ins[i, F_MODE] == 1
                        size_of = 4 if raw else 1
                        accepted = max(take + 2, aw_free)
                        addr = window + ins[i, F_DRAM]
                        stride = ins[i, F_STRIDE]
                        length = ins[i, F_LEN] * size_of
                        bytes_written += n * length
                        # line_pattern(addr, stride, length, bus).steps, into `steps[0]`'s
                        # place: the store unit has no read command.
                        whole = (max(1, length) - 1) // bus
                        part = (max(1, length) - 1) & (bus - 1)
                        start = addr & (bus - 1)
                        rest = stride & (bus - 1)
                        aw_ready = accepted + 1
                        taken = accepted + 1
                        line_prev = -1
                        answered = _end_before(responses, answers, 1) if answers else -1
                        aw = aw_next if aw_next > aw_ready else aw_ready
                        for _ in range(n):
                            if write_ahead:
                                gate = _end_before(w_recent, bursts_written, write_ahead) - \
                                    write_slack
                                if gate > aw:
                                    aw = gate
                            gate = _end_before(responses, answers, _RESPONSES) + 1
                            if gate > aw:
                                aw = gate
                            if raw:
                                taken += 1
                                if line_free > taken:
                                    taken = line_free
                                line_at = taken
                            else:
                                taken += 1
                                gate = _end_before(stage_out, rows_out, _OUTPUT_LATENCY)
                                if gate > taken:
                                    taken = gate
                                line_at = taken + _OUTPUT_LATENCY
                                if line_prev + 1 > line_at:
                                    line_at = line_prev + 1
                                if line_free > line_at:
                                    line_at = line_free
                                stage_out[rows_out & (stage_out.shape[0] - 1)] = line_at
                                rows_out += 1
                                line_prev = line_at
                            first_beat = line_at + 1
                            if aw + 1 > first_beat:
                                first_beat = aw + 1
                            if w_end + 1 > first_beat:
                                first_beat = w_end + 1
                            w_end = first_beat + whole + (1 if start + part >= bus else 0)
                            start += rest
                            if start >= bus:
                                start -= bus
                            line_free = w_end
                            w_recent[bursts_written & (w_recent.shape[0] - 1)] = w_end
                            bursts_written += 1
                            answered = max(w_end + write_response, aw + write_latency,
                                           answered + 1)
                            responses[answers & (responses.shape[0] - 1)] = answered
                            answers += 1
                            aw += 1
                        aw -= 1
                        aw_next = aw + 1
                        aw_free = aw
                        finish = taken
                        output_empty = answered + 1
                        if flags & _PUSH_PREV:
                            finish = max(finish + 1, output_empty)
                        st_pc = 9
                if st_pc == 2:
                    if rc[_C_EXISTS, _STORE] and rc[_C_LAST_AR, _STORE] < 0:
                        wanted = _NONE
                        break
                    if rc[_C_EXISTS, _STORE]:
                        st_accepted = max(st_accepted, rc[_C_LAST_AR, _STORE])
                    st_pc = 3
                if st_pc == 3:
                    if now < st_accepted:
                        wanted = st_accepted
                        break
                    length = 4 * ins[i, F_LEN]
                    _submit(rc, steps, g, _STORE, st_accepted, 3, window + ins[i, F_DRAM],
                            length, length, bus, -1, 0)
                    _dma_opens(_STORE, st_accepted + 1, rc, in_flight, counted, g)
                    _wake(ev, g, _MEMORY)
                    st_pc = 4
                if st_pc == 4:
                    if rc[_C_LAST_END, _STORE] < 0:
                        wanted = _NONE
                        break
                    finish = rc[_C_LAST_END, _STORE] + 1
                    st_pc = 9
                # st_pc == 9: retired.
                st_fsm_free = finish + 1
                _busy(_STORE, st_take + 1, finish, us, busy)
                _push(_STORE, flags, finish, tc, pushes, ev, g)
                us[_U_RETIRED, _STORE] += 1
                _settle(_STORE, max(st_fsm_free, output_empty), us, ev, g)
                st_position += 1
                st_pc = 0

        else:  # the read channel
            wanted = _read_channel(params, ins, units, word_end, tc, pushes, busy, stall_dma,
                                   loads, rc, steps, history, in_flight, counted, s_handshakes,
                                   g, ev, us)
        if g[_G_ERROR]:
            return g[_G_ERROR], 0, 0, 0, 0, 0
        if wanted == _STOP:
            break
        if wanted == _NONE:
            ev[_E_BLOCKED, actor] = 1
        else:
            _schedule(ev, g, actor, wanted if wanted > time else time)

    if cycles < 0:
        heads = count
        for u in range(1, 4):
            taken = us[_U_TAKEN, u]
            if taken < us[_U_QUEUED, u]:
                heads = min(heads, units[u, taken])
        if heads == count:
            return DEADLOCK_EMPTY, 0, 0, 0, 0, 0
        return DEADLOCK, heads, 0, 0, 0, 0
    return OK, 0, 0, cycles, stall_queue, bytes_written

@njit(cache=True, _nrt=False, inline="always")
def _read_channel(params, ins, units, word_end, tc, pushes, busy, stall_dma, loads, rc, steps,
                  history, in_flight, counted, s_handshakes, g, ev, us):
    """The read channel's actor (`_Run._memory`): bursts are accepted one by one (and in
    runs by `_stream`) until the next one falls at or after the next event of another
    actor. Returns the cycle to wake at, or _NONE with no command in progress."""
    read_latency, read_ahead, read_slack = params[8], params[9], params[10]
    # The next event of the other actors changes only when one is scheduled
    # (which counts g[_G_SEQ] up): found again only then, not for every line.
    horizon = _INF
    horizon_seq = -1
    while True:
        if g[_G_SEQ] != horizon_seq:
            horizon = _horizon(ev)
            horizon_seq = g[_G_SEQ]
        now = g[_G_NOW]
        # next_handshake
        client = -1
        pending = _INF
        several = False
        for c in range(4):
            if rc[_C_ACTIVE, c]:
                if client >= 0:
                    several = True
                client = c
                if rc[_C_READY, c] < pending:
                    pending = rc[_C_READY, c]
        if client < 0:
            return _NONE
        t = max(g[_G_NEXT_AR], pending)
        grant = g[_G_GRANT]
        if several or not rc[_C_ACTIVE, grant]:
            while True:
                if rc[_C_ACTIVE, grant] and rc[_C_READY, grant] <= t:
                    break
                for offset in range(1, 5):
                    candidate = (grant + offset) & 3
                    if rc[_C_ACTIVE, candidate] and rc[_C_READY, candidate] <= t:
                        grant = candidate
                        break
                t += 1
        if read_ahead:
            gate = _end_before(history, g[_G_BURSTS], read_ahead) - read_slack
            if gate > t:
                t = gate
        gate = _end_before(in_flight[grant], rc[_C_BURSTS, grant],
                           READER_LINES_IN_FLIGHT) + 1
        if gate > t:
            t = gate
        client = grant
        if t > now:
            if t >= horizon:
                return t
            g[_G_NOW] = t
            now = t
        # accept
        line = rc[_C_DONE, client]
        phase = rc[_C_PHASE, client]
        beats = steps[client, phase]
        rc[_C_PHASE, client] = 0 if phase + 1 == rc[_C_PERIOD, client] else phase + 1
        start = t + read_latency
        if start <= g[_G_DATA_END]:
            start = g[_G_DATA_END] + 1
        end = start + beats - 1
        first_take = rc[_C_FIRST_TAKE, client]
        if first_take >= 0:
            held = rc[_C_HELD, client]
            if end < held:
                end = held
            rc[_C_HELD, client] = end + 1 if line or end >= first_take else first_take
        if client == _FETCH:
            word = rc[_C_OWNER, _FETCH] + line
            word_end[word] = end
            if word == g[_G_FE_WORD]:
                _wake(ev, g, _FETCH)
        else:
            # Waits for DRAM data (`_Run._dma_line`).
            take = end + 1
            slot = rc[_C_BURSTS, client] & (counted.shape[1] - 1)
            if line == 0 and first_take > take:
                rc[_C_WINDOW, client] = first_take + 1
                counted[client, slot] = end
            else:
                for other in range(1, 4):
                    if (other != client and rc[_C_ACTIVE, other]
                            and take >= rc[_C_WINDOW, other]):
                        counted[client, slot] = end
                        g[_G_DMA_COVERED] += 1
                        break
            if line + 1 == rc[_C_LINES, client]:
                start = rc[_C_WINDOW, client]
                late = 1 if first_take >= 0 and start > first_take else 0
                g[_G_DMA_TAKES] += rc[_C_LINES, client] - late
                last = rc[_C_HELD, client] if first_take >= 0 else take
                _stall(stall_dma, g, _G_STALL_DMA, start, last + 1)
        if client == _LOAD and line == rc[_C_LINES, _LOAD] - 1:
            # The last line of a LOAD (`_Run._load_line`).
            position = rc[_C_OWNER, _LOAD]
            consumed = rc[_C_HELD, _LOAD]
            li = units[_LOAD, position]
            retire = consumed + 2 + ins[li, F_PAD_HI]
            loads[_L_RETIRE, position] = retire
            _busy(_LOAD, loads[_L_TAKE, position] + 1, retire, us, busy)
            us[_U_RETIRED, _LOAD] += 1
            _push(_LOAD, ins[li, F_FLAGS], retire, tc, pushes, ev, g)
            _settle(_LOAD, max(retire + 1, loads[_L_HANDOFF, position] + 1), us, ev, g)
            _wake(ev, g, _LOAD)
        rc[_C_PREV_END, client] = end
        g[_G_DATA_END] = end
        g[_G_BEATS] += beats
        history[g[_G_BURSTS] & (history.shape[0] - 1)] = end
        g[_G_BURSTS] += 1
        in_flight[client, rc[_C_BURSTS, client] & (in_flight.shape[1] - 1)] = end
        rc[_C_BURSTS, client] += 1
        rc[_C_DONE, client] = line + 1
        rc[_C_READY, client] = t + 1
        g[_G_NEXT_AR] = t + 1
        g[_G_GRANT] = client
        for offset in range(1, 4):
            candidate = (client + offset) & 3
            if rc[_C_ACTIVE, candidate] and rc[_C_READY, candidate] <= t:
                g[_G_GRANT] = candidate
                break
        if rc[_C_DONE, client] >= rc[_C_LINES, client]:
            rc[_C_LAST_AR, client] = t
            rc[_C_LAST_END, client] = end
            rc[_C_ACTIVE, client] = 0
            if client != _FETCH or g[_G_FE_FETCH]:
                _wake(ev, g, client)
        elif client != _FETCH:
            if g[_G_SEQ] != horizon_seq:
                horizon = _horizon(ev)
                horizon_seq = g[_G_SEQ]
            _stream(client, horizon, rc[_C_LINES, client] - 1, rc, steps, g,
                    history, in_flight[client], read_ahead, read_slack, read_latency,
                    s_handshakes)


@njit(cache=True, _nrt=False)
def _steady(history, bursts, handshakes, stepped, window, period, lines, horizon):
    """`performance_memory._steady` on the rings: (periods, shift) to take at once, or
    (0, 0). The last ``window`` of ``bursts`` channel ends and the last of ``stepped``
    handshakes are compared with those one ``period`` earlier."""
    mask = history.shape[0] - 1
    last = handshakes[(stepped - 1) & (handshakes.shape[0] - 1)]
    shift = last - handshakes[(stepped - 1 - period) & (handshakes.shape[0] - 1)]
    if shift <= 0:
        return 0, 0
    for j in range(bursts - window, bursts):
        if history[j & mask] - history[(j - period) & mask] != shift:
            return 0, 0
    periods = lines // period
    if horizon != _INF:
        periods = min(periods, (horizon - last) // shift)
    return periods, shift


@njit(cache=True, _nrt=False)
def _shift_tail(ring, count, size, jump):
    """Add ``jump`` to the last ``size`` of the ``count`` entries of a ring (`_end_before`)."""
    mask = ring.shape[0] - 1
    for j in range(count - size, count):
        ring[j & mask] += jump


@njit(cache=True, _nrt=False, inline="always")
def _stream(client, horizon, stop, rc, steps, g, history, own, ahead, slack, latency,
            handshakes):
    """`ReadChannel.stream` for a unit's command with no per-line consumer. ``history``
    and ``own`` are the channel's and the client's rings of burst ends (`_end_before`),
    ``handshakes`` a ring of this call's handshakes. The counts stay in locals, and the
    steady-state check is a call between runs of lines: a line is a few additions and
    maxima, and its loop must keep its state in registers."""
    for other in range(4):
        if other != client and rc[_C_ACTIVE, other]:
            return
    line = rc[_C_DONE, client]
    if line >= stop:
        return
    period = rc[_C_PERIOD, client]
    mask = history.shape[0] - 1
    own_mask = own.shape[0] - 1
    handshake_mask = handshakes.shape[0] - 1
    bursts = g[_G_BURSTS]
    own_bursts = rc[_C_BURSTS, client]
    next_ar = max(g[_G_NEXT_AR], rc[_C_READY, client])
    data_end = g[_G_DATA_END]
    beats = 0
    first_take = rc[_C_FIRST_TAKE, client]
    held = rc[_C_HELD, client]
    phase = rc[_C_PHASE, client]
    handshake = -1
    window = max(ahead, READER_LINES_IN_FLIGHT)
    # Lines stepped in this call: a check compares only those (the last `window` ends of
    # the channel are then all this client's, and so are the client's last ones).
    stepped = 0
    check_at = window + period + 1 if stop - line > window + 2 * period else _INF
    while line < stop:
        if stepped >= check_at:
            check_at = stepped + window
            periods, shift = _steady(history, bursts, handshakes, stepped, window, period,
                                     stop - line, horizon)
            if periods > 0:
                # Later checks and gates read from the last window + period ends and
                # handshakes on: those are shifted in place.
                jump = periods * shift
                _shift_tail(history, bursts, window + period, jump)
                _shift_tail(own, own_bursts, READER_LINES_IN_FLIGHT, jump)
                _shift_tail(handshakes, stepped, period + 1, jump)
                data_end += jump
                if first_take >= 0:
                    held = data_end + 1
                handshake += jump
                next_ar = handshake + 1
                line += periods * period
                for j in range(period):
                    beats += periods * steps[client, j]
                continue
        # Lines one by one up to the next check.
        last = min(stop, line + check_at - stepped) if check_at != _INF else stop
        while line < last:
            t = next_ar
            if ahead:
                gate = history[(bursts - ahead) & mask] - slack
                if gate > t:
                    t = gate
            gate = own[(own_bursts - READER_LINES_IN_FLIGHT) & own_mask] + 1
            if gate > t:
                t = gate
            if t > horizon:
                stop = line   # leaves both loops
                break
            b = steps[client, phase]
            phase += 1
            if phase == period:
                phase = 0
            first = t + latency
            if first <= data_end:
                first = data_end + 1
            data_end = first + b - 1
            if first_take >= 0:
                if data_end < held:
                    data_end = held
                held = data_end + 1 if line or data_end >= first_take else first_take
            beats += b
            history[bursts & mask] = data_end
            bursts += 1
            own[own_bursts & own_mask] = data_end
            own_bursts += 1
            handshakes[stepped & handshake_mask] = t
            stepped += 1
            handshake = t
            next_ar = t + 1
            line += 1
    if handshake < 0:
        return
    g[_G_DATA_END] = data_end
    g[_G_BURSTS] = bursts
    rc[_C_BURSTS, client] = own_bursts
    rc[_C_PHASE, client] = phase
    rc[_C_HELD, client] = held
    g[_G_BEATS] += beats
    g[_G_NEXT_AR] = next_ar
    g[_G_GRANT] = client
    rc[_C_PREV_END, client] = data_end
    rc[_C_DONE, client] = line
    rc[_C_READY, client] = next_ar


# -- Python side ------------------------------------------------------------------------------

def words_to_code(words) -> np.ndarray:
    """Instruction words (ints, or the program's bytes as they lie in memory) as the
    int64 array the compiled core reads: low and high half of each word.

    A numpy array is taken as words like any other sequence (never as halves already
    split), and the result is always a new writable array: the compiled core is then
    specialized for one array type only (a read-only array would compile a second one).
    """
    if not isinstance(words, (bytes, bytearray, memoryview)):
        values = np.array(words, dtype=object).reshape(-1)
        halves = np.empty((len(values), 2), np.uint64)
        try:
            # Whole-array operations on the ints: half the time of a to_bytes per word.
            halves[:, 0] = values & _LOW_MASK
            halves[:, 1] = values >> 64
        except (OverflowError, TypeError):
            return np.frombuffer(_words_bytes(words), np.int64).copy()
        return halves.reshape(-1).view(np.int64)
    data = words
    if len(data) % WORD_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of {WORD_BYTES}-byte "
                         "instruction words")
    return np.frombuffer(data, np.int64).copy()


def _words_bytes(words) -> bytes:
    """The slow path of `words_to_code`: words that are not all Python ints in range."""
    values = [int(word) for word in words]
    if any(not 0 <= value <= _WORD_MASK for value in values):
        for index, value in enumerate(values):
            decode(value, index=index)  # raises the reference's first error
    return b"".join(value.to_bytes(WORD_BYTES, "little") for value in values)


def _word(code: np.ndarray, index: int) -> int:
    lo, hi = code[2 * index: 2 * index + 2].view(np.uint64)
    return int(lo) | int(hi) << 64


def run_params(config: AcceleratorConfig, memory: MemoryTiming, instr_base: int,
               window_base: int, grant: int) -> np.ndarray:
    """The ``params`` array of a run (`_simulate`'s; the analytic engine's too)."""
    return np.array([config.rows, config.cols, config.token_depth, config.queue_depth,
                     config.dram_bytes_per_cycle, instr_base, window_base, grant,
                     memory.read_latency, memory.read_ahead, memory.read_slack,
                     memory.write_ahead, memory.write_slack, memory.write_response,
                     memory.write_latency], np.int64)


def checked_code(code: np.ndarray) -> np.ndarray:
    """``code`` (`words_to_code`) checked and as the one array type compiled callers take
    (C-contiguous, aligned, writable): each other type would be another ~30 s numba
    specialization."""
    code = np.asarray(code)
    if code.ndim != 1 or code.dtype != np.int64 or len(code) % 2:
        raise ValueError(f"'code' must be a 1-D int64 array of word halves (words_to_code), "
                         f"not {code.dtype} of shape {code.shape}")
    flags = code.flags
    if flags.c_contiguous and flags.aligned and flags.writeable:
        return code     # what np.require returns for it, without a microsecond of checks
    return np.require(code, np.int64, ["C", "A", "W"])


def raise_status(status: int, info: int, extra: int, code: np.ndarray) -> NoReturn:
    """Raise what `gemmstone.sim.performance._Run` raises for a run that ended with
    ``status`` (not `OK`) and its ``info`` and ``extra`` (the analytic engine's too)."""
    if status == BAD_WORD:
        decode(_word(code, info), index=int(info))
        raise AssertionError(f"the compiled decoder rejected word {info}, which decodes")
    if status == PROGRAM_END:
        raise ProgramEndError(f"the program ended after {info} instructions without halt",
                              index=int(info), text="<end of program>")
    if status == TOKENS_LEFT:
        left = [name for q, name in enumerate(_QUEUE_NAMES) if extra >> q & 1]
        raise TokenError(f"tokens left in queues at halt: {', '.join(left)}", index=int(info),
                         text=str(decode(_word(code, info))))
    if status == DEADLOCK_EMPTY:
        raise TokenError("deadlock: the performance model's units stopped with nothing "
                         "queued", index=None)
    if status == DEADLOCK:
        raise TokenError("deadlock: waits for a token that never arrives", index=int(info),
                         text=str(decode(_word(code, info))))
    raise RuntimeError("a DMA reader got a command while one was in progress")


def run_compiled(config: AcceleratorConfig, memory: MemoryTiming, code: np.ndarray,
                 instr_base: int, window_base: int, grant: int):
    """Run the compiled core on ``code`` (`words_to_code`); returns (counters as an int64
    array in `COUNTERS` order, grant), or raises what `gemmstone.sim.performance._Run`
    raises for the program."""
    params = run_params(config, memory, instr_base, window_base, grant)
    code = checked_code(code)
    status, info, extra, counters, end_grant = _simulate(code, params)
    if status != OK:
        raise_status(status, info, extra, code)
    return counters, int(end_grant)
