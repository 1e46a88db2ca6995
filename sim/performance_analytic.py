"""The performance model's analytic engine: the same microarchitecture priced per instruction
in closed form, about 5x faster than the exact compiled core (about 80 ns of CPU per
instruction on ResNet-18's convolutions, benchmarks/perf_analytic.py best of 7 passes on
2026-11-26; up to twice that while the shared machine is busy; over 10^4x the RTL,
benchmarks/perf_speed.py), within 2% of its CYCLES on every layer and GEMM of that
benchmark (576 cases, worst -1.76%).

`gemmstone.sim.performance` (``engine="python"``) and `gemmstone.sim.performance_core`
(``engine="compiled"``) are exact: they take every DMA line between two events of other
parts one by one (or a steady stream of them once it repeats) and several events per
instruction. This engine (``engine="analytic"``) takes one step per instruction, O(1)
work each:

- what is cheap is kept as the exact model has it: in-order dispatch of one word per
  cycle with the unit queues' depth and FIFO latency, fetch as a read client with the
  FIFO's credit, the token queues (a pop waits for its push, a push for room, at most
  ``token_depth`` tokens), FENCE and HALT waiting for idle units, and the fixed latencies of
  each unit's state machine (load front and back with padding, the compute unit's weight
  loader, double-buffered weight banks, streaming and drain pipeline, the ALU, the store
  unit's output stage);
- a DMA command of ``n`` lines is priced from its line pattern (beats per line, summed in
  closed form) and the `MemoryTiming`: its first burst address when the address channel
  and the memory's acceptance queue allow, its first data ``read_latency`` later, and the
  rest at the rate the exact model's recurrence settles to (one address a cycle, one beat
  a cycle, at most ``read_ahead`` bursts accepted ahead of their data, at most
  `READER_LINES_IN_FLIGHT` lines outstanding per reader, the load unit's reader holding
  one line for its consumer); a STORE's rows likewise (output stage, write beats, write
  responses tracked);
- the shared read channel is a reservation: the next free address cycle and data beat;
  the front end and the units are stepped in time order (the earliest of the front end's
  next step and the three units' next takes, no event heap; but the compute unit's
  instructions that read no DRAM and wait for no token still to come are taken in the
  step of the one before them, as their takes depend on nothing else), and each command
  reserves the channel after those before it. A command that arrives while another reader's
  command holds the channel shares it as the arbiter's round robin does: its data starts
  after the bursts the memory accepted before its first, then its lines alternate with
  the holder's remaining lines, and the holder's data moves back by the beats that went
  between (later reservations see that; a load holding its lines for its consumer pays
  it on its next command). The load unit's read is reserved in the step of its first
  address, not of its take (a command is taken long before its reader is free), so the
  fetches before then reserve the channel first. Fetch and load correct each other both
  ways: a read that shares the channel with a fetch moves the fetch's words not yet
  dispatched (their data-bound ends: an end its address bounds moves only as far as the
  channel is busy) and its last address, and a fetch that shares it with the load unit's
  command still running moves that command's end and the token it pushes, and the load
  taken after it (nothing has taken either yet: steps go in time order). A command that
  arrives before the holder's first address goes first and then alternates with it; the
  memory's acceptance queue gates a sharer's first address. The front end fetches
  several words at a time while its FIFO holds enough words (the one known weakness: on
  a 4-byte bus, where a word is four beats, a short load meets eight words where the
  RTL, fetching a word per freed slot, puts fewer between its lines).
- memory does not grow with the program: words are decoded a chunk at a time (the
  core's decoder, `performance_core.decode_chunk`) into a ring, and dispatch times, fetched
  words, queue entries, token times and stall spans are rings as deep as the hardware's
  queues.

Retired counts and bytes moved are exact (bytes follow from the beats of each line); the
cycles, busy and stall counters are estimates: tests/sim/test_performance_analytic.py
compares them with the exact engine, tests/sim/test_performance_calibration.py with the
RTL. Errors (illegal words, token deadlocks, tokens left at halt, no halt) are the exact
engine's, with the same messages: they do not depend on timing.

The compiled functions are cached by numba as the core's are (its cache directory
scheme, `performance_core.cache_dir`), under ``performance_analytic-<key>``: the key hashes
what this file takes from other files, the core's source included (its decoder is
compiled into this engine).
"""

from __future__ import annotations

import hashlib
import inspect

import numpy as np
from numba import njit

from gemmstone.config import AcceleratorConfig
from gemmstone.sim import performance_core as core
from gemmstone.sim.performance import (
    ALU_LATENCY,
    FETCH_FIFO_DEPTH,
    FIFO_LATENCY,
    OUTPUT_STAGE_LATENCY,
    WRITE_RESPONSES,
)
from gemmstone.sim.performance_core import (
    BAD_WORD,
    DEADLOCK,
    DEADLOCK_EMPTY,
    F_ACTOR,
    F_DRAM,
    F_FLAGS,
    F_K,
    F_KIND,
    F_LEN,
    F_MODE,
    F_N,
    F_PAD_HI,
    F_PAD_LO,
    F_STRIDE,
    F_TYPE,
    K_ALU,
    K_CONFIG,
    K_HALT,
    K_LOADQ,
    K_MATMUL,
    K_PRELOAD,
    K_STORE,
    OK,
    PROGRAM_END,
    ROW_COLUMNS,
    TOKENS_LEFT,
    decode_chunk,
    preload_end,
)
from gemmstone.sim.performance_memory import READER_LINES_IN_FLIGHT, MemoryTiming

__all__ = ["run_analytic", "analytic_key"]

_INF = 1 << 62
_FE, _LOAD, _COMPUTE, _STORE = range(4)
_RESERVE = 4           # the step that reserves the read of the load unit's last take
# Fields of that read (`pending`), kept from its take.
_P_ACCEPTED, _P_TAKE, _P_DATA_START, _P_ADDR, _P_STRIDE, _P_LEN, _P_N, _P_PAD_HI, \
    _P_FLAGS = range(9)
_FLIGHT = READER_LINES_IN_FLIGHT
_WORD = 16                     # bytes of an instruction word (one fetch line)
_POP_PREV, _POP_NEXT, _PUSH_PREV, _PUSH_NEXT = 1, 2, 4, 8
# Token queues in the exact model's order: producer, its push flag, consumer, its pop flag.
_Q_PRODUCER = (_LOAD, _COMPUTE, _COMPUTE, _STORE)
_Q_PUSH = (_PUSH_NEXT, _PUSH_PREV, _PUSH_NEXT, _PUSH_PREV)
_Q_CONSUMER = (_COMPUTE, _LOAD, _STORE, _COMPUTE)
_Q_POP = (_POP_PREV, _POP_NEXT, _POP_PREV, _POP_NEXT)
_T_PUSHED, _T_PENDING, _T_PROMISED, _T_POPPED = range(4)
# Read channel state (`ch`): next free address cycle, next free data beat, the memory's
# acceptance gate for the next burst, beats so far, arbiter grant, then per client the
# gate its own lines in flight set for its next burst and its last address handshake.
_CH_AR, _CH_DATA, _CH_AHEAD, _CH_BEATS, _CH_GRANT = range(5)
_CH_OWN = 5
_CH_LAST = 9
_CH_DEBT = 13
_CH_HOLDER = 17
_CH_QUIET = 18          # last beat of every word fetched so far
_CH_HOLDER_H0 = 19      # first address handshake of the holder's command
_CH_HOLDER_D0 = 20      # its first data beat
_CH_HOLDER_PREV = 21    # the channel's free cycle before it
_CH_PREV_H0 = 22        # the previous holder's first handshake and data beat
_CH_PREV_D0 = 23
_CH_SIZE = 24
# Dispatch times and fetched words are kept for the last `_RING` words only (the fetch FIFO
# reaches FETCH_FIFO_DEPTH words ahead of dispatch).
_RING = 2 * FETCH_FIFO_DEPTH
_RING_MASK = _RING - 1
assert _RING & _RING_MASK == 0
#: Words the front end fetches at a time while more than `_FETCH_LOW` words wait in its
#: FIFO (the RTL fetches as soon as there is room for one; a word fetched a few cycles
#: later changes nothing while dispatch has enough words ahead, and saves steps).
_FETCH_BATCH = 8
_FETCH_LOW = 12
#: Words decoded at a time (the core's decoder, into a buffer of this many rows): a chunk's
#: rows (12 columns each, 12 KiB) stay in the first-level cache until dispatch reads them
#: (512 measured a few percent slower on ResNet-18's convolutions).
_CHUNK = 128
#: Stall spans kept apart before the oldest half is counted for good.
_SPANS = 256
# Columns of a unit queue entry: the word's index, its dispatch cycle (its decoded row
# stays in the ring of decoded words until it is taken) and what the head's candidate reads
# of the row, packed: kind (bits 0-7), token flags (8-11), n > 0, a raw STORE. A candidate
# then reads one entry, not the entry and then the row it names.
_Q_INDEX, _Q_DISPATCHED, _Q_PACKED = 0, 1, 2
_PK_N, _PK_RAW = 1 << 12, 1 << 13
# Floats (`fr`): cycles per line of the command whose data holds the channel, and of the
# holder before it.
_FR_RATE, _FR_PREV_RATE = 0, 1


# -- numba cache: the core's directory scheme, a key of its own -----------------------------

# The core's source as it was imported (its decoder and column layout are compiled into
# this engine; numba only watches this file).
_CORE_SOURCE = hashlib.sha256(inspect.getsource(core).encode()).hexdigest()


def analytic_key() -> str:
    """Hash of what this engine's compiled code takes from other files: the core's key (ISA
    table and model constants), the core's source and the model constants."""
    parts = (core.core_key(), _CORE_SOURCE, FETCH_FIFO_DEPTH, FIFO_LATENCY,
             OUTPUT_STAGE_LATENCY, ALU_LATENCY, WRITE_RESPONSES, READER_LINES_IN_FLIGHT)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


CACHE_DIR = core.cache_dir([root / f"performance_analytic-{analytic_key()}"
                            for root in core.cache_roots()])
core.use_cache_dir(__file__, CACHE_DIR)


# -- rings -----------------------------------------------------------------------------------

@njit(cache=True, _nrt=False, inline="always")
def _slot(value, mask):
    """``value & mask`` (a ring slot; rings are powers of two deep) as an unsigned index:
    numba fixes up every signed index that might be negative (a sign test, a load of the
    length and an add on the way to each element); an unsigned one it takes as it is.
    About 4% of the engine's time on ResNet-18's convolutions."""
    return np.uint64(value & mask)


# -- closed forms ------------------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def _beats(lines, offset, rest, whole, part, bus, shift):
    """Beats of lines ``0 .. lines - 1`` of a command whose line ``i`` starts at
    ``offset + i * rest`` modulo ``bus`` (``offset``, ``rest`` in [0, bus), ``bus == 1 <<
    shift``) and is ``whole * bus + part + 1`` bytes long: a line takes ``whole + 1``
    beats, one more when it crosses a beat boundary, i.e. when it starts at or past
    ``bus - part``.

    The starts repeat every ``period = bus / g`` lines (``g``: the largest power of two
    dividing ``rest``), and a period's starts are the values ``offset % g + k * g``, k in
    [0, period), each once (``rest / g`` is odd, so a unit modulo the period): the lines
    that cross per period are counted in closed form, the lines of the last, partial
    period one by one (fewer than ``bus``). No division: ``bus`` is a power of two."""
    if lines <= 0:
        return 0
    first = bus - part       # the first start whose line crosses
    if rest == 0:
        return lines * (whole + 1 + (1 if offset >= first else 0))
    tz = 0                   # g == 1 << tz
    while not (rest >> tz) & 1:
        tz += 1
    period_shift = shift - tz
    period = 1 << period_shift
    # Starts from k = ceil((first - offset % g) / g) on cross (the shift rounds down,
    # negative values too).
    skipped = (first - (offset & ((1 << tz) - 1)) + (1 << tz) - 1) >> tz
    per_period = period - min(period, max(0, skipped))
    crossing = (lines >> period_shift) * per_period
    start = offset
    for _ in range(lines & (period - 1)):
        if start >= first:
            crossing += 1
        start = (start + rest) & (bus - 1)
    return lines * (whole + 1) + crossing


@njit(cache=True, _nrt=False, inline="always")
def _mod(value, bus, shift):
    """``value % bus`` as a mask: the bus is a power of two (`AcceleratorConfig` checks
    it), and a division by a run-time value costs more than the rest of a line's
    arithmetic."""
    return value & (bus - 1)


@njit(cache=True, _nrt=False, inline="always")
def _div(value, bus, shift):
    """``value // bus`` as a shift (``bus == 1 << shift``; see `_mod`)."""
    return value >> shift


@njit(cache=True, _nrt=False, inline="always")
def _line_beats(index, offset, rest, whole, part, bus, shift):
    """Beats of line ``index`` (see `_beats`)."""
    return whole + 1 + (1 if _mod(offset + index * rest, bus, shift) + part >= bus else 0)


@njit(cache=True, _nrt=False, inline="always")
def _share_of(k, total, n):
    """Beats of the first ``k`` of ``n`` lines of ``total`` beats, as their share (where
    an estimate is enough: gates and paces, not the beats counted)."""
    return total * k // n if k > 0 else 0


@njit(cache=True, _nrt=False, inline="always")
def _gate_offset(k, ahead, ahead_cost, flight_cost, warm):
    """Cycles from a command's first burst address to its ``k``-th when the memory's
    acceptance queue (``ahead`` bursts, refilled ``ahead_cost`` cycles after it fills)
    and the reader's lines in flight (refilled ``flight_cost`` cycles later) pace it.
    A reader starting cold sends a whole window of lines at once, then waits; one whose
    last command still has lines in flight (``warm``) goes on at the steady rate."""
    offset = k
    if 0 < ahead <= k:     # (most commands are shorter than the queue: no division)
        paced = (k // ahead) * ahead_cost + k % ahead
        if paced > offset:
            offset = paced
    if warm:
        paced = k * flight_cost // _FLIGHT
    else:
        paced = (k // _FLIGHT) * flight_cost + k % _FLIGHT
    return paced if paced > offset else offset


@njit(cache=True, _nrt=False, inline="always")
def _share(ch, fr, client, h0, latency, ahead, slack, share):
    """When another reader's command holds the data channel past ``h0 + latency``, the
    round robin puts this reader's bursts between its bursts: fills ``share`` with the
    first cycle this reader's data can start (after the other's bursts already accepted:
    at most ``ahead`` bursts or `READER_LINES_IN_FLIGHT` lines), the other's lines left
    after that (the lines this command's alternate with), their cycles per line, and
    the cycle from which they alternate (-1: from the first; else the holder's first
    address, when this command's come first) and this command's first address (later
    than ``h0`` when the memory's queue is full of the holder's bursts); returns False
    when the channel is this reader's own or free (first come, first served)."""
    holder = ch[_CH_HOLDER]
    free = ch[_CH_DATA]
    if holder == client or holder < 0 or free <= h0 + latency:
        return False
    rate = fr[_FR_RATE]
    first = ch[_CH_HOLDER_H0]
    begin = ch[_CH_HOLDER_D0]
    if h0 < first:
        # The holder's command was reserved first but starts later (its unit took it
        # early): this command goes before it, between the bursts of the one before,
        # and once those are through, alternates with the holder's lines from the
        # holder's first address.
        alone = h0 + latency
        prev = ch[_CH_HOLDER_PREV]
        if prev > alone:
            accepted = _accepted_before(h0, ch[_CH_PREV_H0], ch[_CH_PREV_D0],
                                        fr[_FR_PREV_RATE], ahead)
            alone = max(alone, min(prev, ch[_CH_PREV_D0]
                                   + int(accepted * fr[_FR_PREV_RATE])))
            if alone < prev:
                return _shared(share, alone, (prev - alone) / fr[_FR_PREV_RATE],
                               fr[_FR_PREV_RATE], -1, h0)
        return _shared(share, alone, (free - begin) / rate, rate, first, h0)
    accepted = _accepted_before(h0, first, begin, rate, ahead)
    if ahead > 0 and accepted >= ahead:
        # The memory's queue: this command's first address waits for the data of the
        # holder's burst `ahead` before it (by when more of the holder's are through).
        gate = begin + int((int(accepted) - ahead + 1) * rate) - 1 - slack
        if gate > h0:
            h0 = gate
            accepted = _accepted_before(h0, first, begin, rate, ahead)
    start = max(h0 + latency, min(free, begin + int(accepted * rate)))
    return _shared(share, start, (free - start) / rate, rate, -1, h0)


@njit(cache=True, _nrt=False, inline="always")
def _shared(share, start, others, rate, since, h0):
    """Fill ``share`` as `_share` describes it; returns True."""
    share[0] = start
    share[1] = others
    share[2] = rate
    share[3] = since
    share[4] = h0
    return True


@njit(cache=True, _nrt=False, inline="always")
def _accepted_before(h0, first, begin, rate, ahead):
    """Bursts of a command (first address ``first``, data from ``begin`` at ``rate``
    cycles per line) the memory accepted before ``h0``: one address a cycle since its
    first, at most ``ahead`` bursts (or a reader's lines in flight) beyond those whose
    data is through by then."""
    cap = _FLIGHT if ahead <= 0 or ahead > _FLIGHT else ahead
    return min(max(0.0, (h0 - begin) / rate) + cap, float(max(0, h0 - first)))


@njit(cache=True, _nrt=False, inline="always")
def _hold(ch, fr, client, h0, d0, end, lines):
    """``client``'s command (first address ``h0``, data ``d0`` .. ``end``, ``lines`` lines)
    now holds the data channel; the holder before it is kept for a command that starts
    before it (`_share`)."""
    ch[_CH_HOLDER_PREV] = ch[_CH_DATA]
    ch[_CH_PREV_H0] = ch[_CH_HOLDER_H0]
    ch[_CH_PREV_D0] = ch[_CH_HOLDER_D0]
    fr[_FR_PREV_RATE] = fr[_FR_RATE]
    fr[_FR_RATE] = max(1.0, (end - d0 + 1) / lines)
    ch[_CH_DATA] = max(ch[_CH_DATA], end + 1)
    ch[_CH_HOLDER] = client
    ch[_CH_HOLDER_H0] = h0
    ch[_CH_HOLDER_D0] = d0


@njit(cache=True, _nrt=False, inline="always")
def _delay_fetch(ch, word_end, word_data, undispatched, asked, d0, h0, n, total, ahead,
                 slack):
    """A reader's command of ``n`` lines (``total`` beats, first beat ``d0``, first
    address ``h0``) shares the channel with the fetch: the round robin puts one of its
    lines before each fetched word whose data was to end at ``d0`` or later, so the
    ``m``-th such word ends later by the beats of ``min(m, n)`` lines; the fetch's
    addresses after ``h0`` alternate with the command's, and its last one waits as long
    as its data (at most one cycle per line)."""
    moved = 0
    quiet = ch[_CH_QUIET]
    for word in range(undispatched, asked):
        slot = _slot(word, _RING_MASK)
        if word_end[slot] >= d0:
            # Its data-bound end moves; an end bound by its address stays (the lines
            # fill the channel's idle beats first).
            moved += 1
            word_data[slot] += _share_of(min(moved, n), total, n)
            if word_data[slot] > word_end[slot]:
                word_end[slot] = word_data[slot]
                if word_end[slot] > quiet:
                    quiet = word_end[slot]
    ch[_CH_QUIET] = quiet
    if ch[_CH_LAST] >= h0:
        ch[_CH_LAST] += min(n, ch[_CH_LAST] - h0 + 1)
        # (A burst `_RING` or more words back was dispatched long ago: no gate.)
        if 0 < ahead < _RING and asked - 1 - ahead >= 0:
            # Its last address waits for the memory's queue, i.e. for moved data.
            gate = word_end[_slot(asked - 1 - ahead, _RING_MASK)] - slack
            if gate > ch[_CH_LAST]:
                ch[_CH_LAST] = gate


@njit(cache=True, _nrt=False, inline="always")
def _read(ch, fr, client, accepted, n, addr, stride, length, first_take, bus, shift,
          latency, ahead, slack, out, share, word_end, word_data, undispatched, asked):
    """Reserve the read channel for ``client``'s command of ``n`` lines accepted at
    ``accepted`` (first address the cycle after). A reader that holds one line for its
    consumer (``first_take >= 0``: the load unit's) lets line ``i`` go only once line
    ``i - 1`` was taken, one a cycle from ``first_take``. Fills ``out``: last address
    handshake, last line's last beat, the cycle the consumer took the last line, the
    beat the data alone would end on (the rest: its addresses or its consumer bound it),
    and the beats it took from the lines of another reader's command holding the channel
    (0 if none) and that reader.
    When it shares the channel with the fetch, the fetched words ``undispatched`` ..
    ``asked`` - 1 (their ends in ``word_end``, data-bound ends in ``word_data``) move
    (`_delay_fetch`)."""
    length = max(1, length)
    offset = _mod(addr, bus, shift)
    rest = _mod(stride, bus, shift)
    whole = _div(length - 1, bus, shift)
    part = _mod(length - 1, bus, shift)
    if rest == 0:
        # Every line starts at the same offset (most commands): no call, no division.
        last = whole + 1 + (1 if offset + part >= bus else 0)
        total = n * last
        mean = last
    else:
        total = _beats(n, offset, rest, whole, part, bus, shift)
        last = _line_beats(n - 1, offset, rest, whole, part, bus, shift)
        mean = total // n
    out[4] = 0             # no beats taken from another reader's command (yet)
    h0 = max(accepted + 1, ch[_CH_OWN + client])
    if ch[_CH_GRANT] != client:
        h0 += 1       # the grant moves to this reader a cycle later
    shared = _share(ch, fr, client, h0, latency, ahead, slack, share)
    if shared:
        d0 = int(share[0])
        h0 = int(share[4])
    else:
        h0 = max(h0, ch[_CH_AR], ch[_CH_AHEAD])
        d0 = max(h0 + latency, ch[_CH_DATA])
    ahead_cost = latency + mean - 1 - slack
    warm = ch[_CH_OWN + client] > accepted + 1
    h_last = h0 + _gate_offset(n - 1, ahead, ahead_cost, latency + mean, warm)
    # The acceptance queue and the lines in flight wait for data behind earlier beats.
    if ahead > 0 and n - 1 >= ahead:
        gate = d0 + _share_of(n - ahead, total, n) - 1 - slack
        if gate > h_last:
            h_last = gate
    if n - 1 >= _FLIGHT:
        gate = d0 + _share_of(n - _FLIGHT, total, n)
        if gate > h_last:
            h_last = gate
    data_end = d0 + total - 1
    alternated = n - 1     # lines with one of the other command's lines before them
    if shared:
        if share[3] >= 0:
            # This command's first lines go before the other's first address.
            alternated = max(0, n - max(0, int(share[3]) - h0))
        # A line of the other command between two of this one's.
        data_end += int(min(alternated, share[1]) * share[2])
        h_last += min(n - 1, max(0, ch[_CH_LAST + ch[_CH_HOLDER]] - h0 + 1))
        if ahead > 0 and n > ahead:
            # The memory's queue: the last address waits for the data of the burst
            # `ahead` before it; while the other reader's lines go between, every other
            # burst in between is one of them.
            if share[1] >= n - 1:
                gate = data_end - int(ahead * (total / n + share[2]) / 2) - slack
            else:
                gate = data_end - int(ahead * total / n) - slack
            if gate > h_last:
                h_last = gate
    # Line 0 waits in the reader until ``first_take``, and every line's last beat waits
    # for the line before to be taken (a line a cycle): the lines after it follow.
    held_end = -1
    if first_take >= 0 and n > 1:
        held_end = first_take + max(n - 2, total
                                    - _line_beats(0, offset, rest, whole, part, bus, shift)
                                    - _line_beats(1, offset, rest, whole, part, bus,
                                                  shift))
    # Bursts of other readers that went between the bursts of this reader's last command
    # (round robin) moved its data back by their beats (`_share`). Later reservations
    # see that in the channel's free cycle already; a reader that holds its lines for a
    # consumer a line a cycle lost those cycles for good: charged to this command.
    if held_end >= 0:
        held_end += ch[_CH_DEBT + client]
    ch[_CH_DEBT + client] = 0
    end = max(data_end, h_last + latency + last - 1)
    taken = end + 1
    if first_take >= 0:
        # Line 0 waits in the reader until ``first_take``; then a line a cycle.
        if held_end > end:
            end = held_end
        taken = max(end + 1, first_take + n - 1)
    if shared and ch[_CH_HOLDER] == 0:
        # The fetch holds the channel: its words not dispatched yet (``undispatched`` ..
        # ``asked`` - 1) come later by this command's lines that go between them.
        _delay_fetch(ch, word_end, word_data, undispatched, asked, d0, h0, n, total, ahead,
                     slack)
    if shared:
        # The other command's data runs longer by this one's beats that went between its
        # lines: its reader's next command pays them (its own times are taken already).
        stolen = min(total, int(min(float(n), n - alternated + share[1]) * total / n))
        out[4] = stolen
        out[5] = ch[_CH_HOLDER]
        ch[_CH_DEBT + ch[_CH_HOLDER]] += stolen
        ch[_CH_DATA] += stolen
        ch[_CH_AR] = max(ch[_CH_AR], h_last + 1)
    else:
        ch[_CH_AR] = h_last + 1
    if end + 1 >= ch[_CH_DATA] or not shared:
        _hold(ch, fr, client, h0, d0, end, n)
    # The next bursts wait for the last beat of the burst `ahead` before (the memory's
    # queue) and of this reader's line `READER_LINES_IN_FLIGHT` before: lines ended
    # `spacing` cycles apart.
    spacing = max(1.0, (end - d0 + 1) / n)
    if ahead > 0:
        ch[_CH_AHEAD] = end - int((ahead - 1) * spacing) - slack
    if n >= _FLIGHT:
        # (Fewer lines leave the gate of the lines before them.)
        ch[_CH_OWN + client] = end - int((_FLIGHT - 1) * spacing) + 1
    ch[_CH_BEATS] += total
    ch[_CH_GRANT] = client
    ch[_CH_LAST + client] = h_last
    out[0] = h_last
    out[1] = end
    out[2] = taken
    out[3] = data_end


@njit(cache=True, _nrt=False, inline="always")
def _fetch(ch, fr, accepted, first, words, bus, latency, ahead, slack, word_end, word_data,
           share, shape):
    """Reserve the read channel for a fetch of ``words`` words from word ``first``: its
    bursts go between those of a command in progress (round robin), its data beats
    between that command's, whose later reservations move back by them. Fills
    ``word_end`` (and ``word_data``: the ends the data alone sets, `_delay_fetch`) and the
    fetch's last address handshake (``ch``); returns the beats the command in progress
    lost to it. ``shape``: a word's bytes past
    whole beats, its whole beats, and the offset of the next word fetched in a beat
    (fetches follow each other through the code, so that offset carries on)."""
    rest = shape[0]
    whole = shape[1]
    part = _WORD - 1 - whole * bus
    start = shape[2]
    h0 = accepted + 1
    if ch[_CH_GRANT] != 0:
        h0 += 1
    # Another reader sending addresses: every other address is the fetch's.
    busy = 0
    for client in range(1, 4):
        if ch[_CH_LAST + client] >= h0 and ch[_CH_LAST + client] - h0 + 1 > busy:
            busy = ch[_CH_LAST + client] - h0 + 1
    alternate = (busy + 1) // 2
    shared = _share(ch, fr, 0, h0, latency, ahead, slack, share)
    if shared:
        d0 = int(share[0])
        h0 = int(share[4])
        rate = share[2]
        others = share[1]
    else:
        h0 = max(h0, ch[_CH_AHEAD])
        d0 = max(h0 + latency, ch[_CH_DATA])
        rate = 0.0
        others = 0.0
    ahead_cost = latency + whole - slack
    end = -1
    h = h0
    beats = 0
    group = 0          # bursts since the acceptance queue last filled
    base_paced = 0     # `_gate_offset` at the last fill, kept without divisions
    quiet = ch[_CH_QUIET]
    alternated = 0     # words with one of the other reader's lines before them
    stolen = 0         # beats the other reader's command lost to this one
    for j in range(words):
        if j:
            group += 1
            if ahead > 0 and group == ahead:
                group = 0
                base_paced += ahead_cost
        paced = base_paced + group
        h = h0 + max(j, paced) + (j if j < alternate else alternate)
        if ahead > 0 and j >= ahead:
            # The memory's queue: burst ``j - ahead``'s data must be nearly through.
            gate = word_end[_slot(first + j - ahead, _RING_MASK)] - slack
            if gate > h:
                h = gate
        line = whole + 1 + (1 if start + part >= bus else 0)
        start += rest
        if start >= bus:
            start -= bus
        beats += line
        end = d0 + beats - 1
        if shared:
            if share[3] < 0:
                alternated = j
            elif h >= share[3]:
                alternated += 1
            if alternated <= others:
                stolen += line
            end += int(min(alternated, others) * rate)
        word_data[_slot(first + j, _RING_MASK)] = end
        if h + latency + line - 1 > end:
            end = h + latency + line - 1
        word_end[_slot(first + j, _RING_MASK)] = end
        if end > quiet:
            quiet = end
    shape[2] = start
    ch[_CH_QUIET] = quiet
    total = beats
    if ch[_CH_AR] < h + 1:
        ch[_CH_AR] = h + 1
    if shared:
        # The command whose data holds the channel runs longer by the beats that went
        # before or between its lines: its reader's next command pays them (`_read`).
        ch[_CH_DEBT + ch[_CH_HOLDER]] += stolen
        ch[_CH_DATA] += stolen
    if end + 1 >= ch[_CH_DATA] or not shared:
        _hold(ch, fr, 0, h0, d0, end, words)
    ch[_CH_BEATS] += total
    ch[_CH_LAST] = h
    if busy == 0:
        ch[_CH_GRANT] = 0
    return stolen


@njit(cache=True, _nrt=False, inline="always")
def _move_load(stolen, now, ch, pending, settle_event, idle_from, busy_total, busy_reach, tc,
               pushes, token_mask, ld_data, ld_end, ld_last_ar, ld_retire, ld_at,
               ld_front_free, ld_own, ld_pushed):
    """Another reader's command (a fetch, a LOADQ, a LOADACC) reserved at ``now`` took
    ``stolen`` beats between the lines of the load unit's command, which still runs: its
    data-bound end ``ld_data`` moves (an end its addresses bound, ``ld_end``, moves less:
    the other's beats fill idle ones first), and so does all that waits for its end, its
    last address, retire and pushed token and the load taken after it (nothing has taken
    those yet: steps go in time order); the beats are not charged to its next command as
    well. Returns the load unit's new ``ld_data, ld_end, ld_last_ar, ld_retire, ld_at,
    ld_front_free`` and the units whose heads must be looked at again (bit u for unit u)."""
    ch[_CH_DEBT + _LOAD] -= stolen
    ld_data += stolen
    moved = ld_data - ld_end
    if moved <= 0:
        return ld_data, ld_end, ld_last_ar, ld_retire, ld_at, ld_front_free, 0
    ld_end = ld_data
    ar_moved = min(moved, max(0, ld_last_ar - now))
    ld_last_ar += ar_moved
    ch[_CH_LAST + _LOAD] += ar_moved
    if ld_own:
        # (Its own lines-in-flight gate: a short read left the gate of the reads before
        # it, `_read`.)
        ch[_CH_OWN + _LOAD] += moved
    settle_event[_LOAD] = max(settle_event[_LOAD], ld_last_ar)
    retired_before = ld_retire
    ld_retire += moved
    if ld_at < _INF:
        # The load taken since, whose read is not reserved yet, waits for this one: its
        # first address and its hand-off move too.
        handoff = max(pending[_P_ACCEPTED] + 1, retired_before + 1)
        ld_at = max(pending[_P_TAKE] + 2, ld_last_ar)
        later = max(ld_at + 1, ld_retire + 1) - handoff
        pending[_P_ACCEPTED] = ld_at
        settle_event[_LOAD] = max(settle_event[_LOAD], ld_at + 1)
        pending[_P_DATA_START] += later
        ld_front_free += later
    idle_from[_LOAD] = max(idle_from[_LOAD], ld_retire + 1)
    if busy_reach[_LOAD] > now:
        busy_total[_LOAD] += moved
        busy_reach[_LOAD] += moved
    dirty = 1 << _LOAD
    if ld_pushed and tc[0, _T_POPPED] < tc[0, _T_PUSHED]:
        pushes[0, _slot(tc[0, _T_PUSHED] - 1, token_mask)] += moved
        dirty |= 1 << _COMPUTE
    return ld_data, ld_end, ld_last_ar, ld_retire, ld_at, ld_front_free, dirty


@njit(cache=True, _nrt=False, inline="always")
def _head(unit, taken_count, queued, queue, takes, mask):
    """The cycle ``unit``'s head entry is visible to it (-1: its queue is empty) and the
    entry's packed kind, flags and fields."""
    position = taken_count[unit]
    if position >= queued[unit]:
        return -1, 0
    slot = queue[unit, _slot(position, mask)]
    visible = slot[_Q_DISPATCHED] + FIFO_LATENCY
    if position:
        visible = max(visible, takes[unit, _slot(position - 1, mask)] + 1)
    return visible, slot[_Q_PACKED]


@njit(cache=True, _nrt=False, inline="always")
def _compute_structural(packed, visible, loader_free, preload_from, fsm_free, drain_end):
    """The cycle the compute unit's state machines let its head (``packed``: `_Q_PACKED`)
    start, visible to it from ``visible``: a PRELOAD once the weight loader is free and
    the instruction before has let go of the array (a MATMUL once started, an ALU or
    LOADACC once done); a MATMUL that streams once the loader and the state machine are
    free; anything else once the array has drained too."""
    kind = packed & 255
    if kind == K_PRELOAD:
        return max(visible, loader_free, preload_from)
    if kind == K_MATMUL and packed & _PK_N:
        return max(visible, loader_free, fsm_free)
    return max(visible, loader_free, fsm_free, drain_end + 1)


# -- token queues --------------------------------------------------------------------------
# Push and pop times live in rings (`mask` + 1 entries per queue): a queue holds at most
# token_depth tokens, so pops look back at most that far and pushes run at most that far
# ahead of the pops.

@njit(cache=True, _nrt=False, inline="always")
def _token_ready(unit, flags, depth, tc, pushes, pops, mask):
    """Earliest cycle the head's pops are there and its pushes have room; -1 while that
    depends on a push or pop not known yet."""
    ready = 0
    for q in range(4):
        if _Q_CONSUMER[q] == unit and flags & _Q_POP[q]:
            needed = tc[q, _T_POPPED]
            if needed >= tc[q, _T_PUSHED]:
                return -1
            ready = max(ready, pushes[q, _slot(needed, mask)] + 1)
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            needed = tc[q, _T_PROMISED] - depth
            if needed >= 0:
                if needed >= tc[q, _T_POPPED]:
                    return -1
                ready = max(ready, pops[q, _slot(needed, mask)] + 1)
    return ready


@njit(cache=True, _nrt=False, inline="always")
def _candidate(unit, packed, structural, gate, depth, tc, pushes, pops, mask, cand,
               cand_gate, cand_ready):
    """Record ``unit``'s head (``packed``: `_Q_PACKED`) as taken once its state machines
    allow (``structural``) and its tokens are there (`_token_ready`), with the cycle it
    waits from (``gate``) and its tokens' cycle for the stall counters; nothing while
    its tokens depend on a push or pop not known yet."""
    ready = _token_ready(unit, (packed >> 8) & 15, depth, tc, pushes, pops, mask)
    if ready >= 0:
        cand[unit] = max(structural, ready)
        cand_gate[unit] = gate
        cand_ready[unit] = ready


@njit(cache=True, _nrt=False, inline="always")
def _take(unit, flags, time, tc, pops, mask):
    for q in range(4):
        if _Q_CONSUMER[q] == unit and flags & _Q_POP[q]:
            pops[q, _slot(tc[q, _T_POPPED], mask)] = time
            tc[q, _T_POPPED] += 1
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            tc[q, _T_PROMISED] += 1
            tc[q, _T_PENDING] += 1


@njit(cache=True, _nrt=False, inline="always")
def _push(unit, flags, time, tc, pushes, mask):
    """Record the pushes of ``unit``'s instruction at ``time``, in time order among the
    pushes not popped yet (the exact model keeps them sorted)."""
    for q in range(4):
        if _Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]:
            tc[q, _T_PENDING] -= 1
            j = tc[q, _T_PUSHED]
            low = tc[q, _T_POPPED]
            while j > low and pushes[q, _slot(j - 1, mask)] > time:
                pushes[q, _slot(j, mask)] = pushes[q, _slot(j - 1, mask)]
                j -= 1
            pushes[q, _slot(j, mask)] = time
            tc[q, _T_PUSHED] += 1


@njit(cache=True, _nrt=False, inline="always")
def _retire(unit, flags, take, busy_last, finish, busy_total, busy_reach, retired, tc,
            pushes, mask):
    """``unit``'s instruction taken at ``take`` is done: busy until ``busy_last`` (the
    union of [take + 1, busy_last] over its takes, in order), its pushes at ``finish``.
    Returns the units whose heads must be looked at again (bit u for unit u): this one
    and those across the token queues it pushed or popped."""
    start = take + 1
    stop = busy_last + 1
    if stop > start and stop > busy_reach[unit]:
        busy_total[unit] += stop - max(start, busy_reach[unit])
        busy_reach[unit] = stop
    retired[unit] += 1
    _push(unit, flags, finish, tc, pushes, mask)
    return 1 << unit | _across(unit, flags)


@njit(cache=True, _nrt=False, inline="always")
def _across(unit, flags):
    """The units across the token queues ``unit``'s instruction (``flags``) pushes to or
    pops from (bit u for unit u)."""
    units = 0
    for q in range(4):
        if (_Q_PRODUCER[q] == unit and flags & _Q_PUSH[q]) or \
                (_Q_CONSUMER[q] == unit and flags & _Q_POP[q]):
            units |= 1 << (_Q_CONSUMER[q] if _Q_PRODUCER[q] == unit else _Q_PRODUCER[q])
    return units


# -- stall counters ------------------------------------------------------------------------

@njit(cache=True, _nrt=False, inline="always")
def _stall(spans, meta, start, end):
    """Add [start, end) to the union of stall spans: disjoint sorted segments in
    ``spans`` (``meta``: their count, cycles of segments counted for good). Spans arrive
    roughly in time order, so a new one merges with the last few segments; when the
    array is full, its older half is counted for good."""
    if end <= start:
        return
    count = meta[0]
    if count:
        # The common cases: the span overlaps or touches only the last segment, or lies
        # after it.
        last_end = spans[count - 1, 1]
        if start <= last_end and start >= spans[count - 1, 0]:
            if end > last_end:
                spans[count - 1, 1] = end
            return
        if start > last_end and count < spans.shape[0] - 2:
            spans[count, 0] = start
            spans[count, 1] = end
            meta[0] = count + 1
            return
    j = count
    while j > 0 and spans[j - 1, 0] > end:
        j -= 1
    low = j
    while low > 0 and spans[low - 1, 1] >= start:
        low -= 1
        if spans[low, 0] < start:
            start = spans[low, 0]
        if spans[low, 1] > end:
            end = spans[low, 1]
    # Segments low .. j - 1 merge into the new one; j .. count - 1 move to low + 1.
    shift = low + 1 - j
    if shift > 0:
        for k in range(count - 1, j - 1, -1):
            spans[k + shift, 0] = spans[k, 0]
            spans[k + shift, 1] = spans[k, 1]
    elif shift < 0:
        for k in range(j, count):
            spans[k + shift, 0] = spans[k, 0]
            spans[k + shift, 1] = spans[k, 1]
    spans[low, 0] = start
    spans[low, 1] = end
    count += shift
    if count >= spans.shape[0] - 1:
        half = count // 2
        for k in range(half):
            meta[1] += spans[k, 1] - spans[k, 0]
        for k in range(half, count):
            spans[k - half, 0] = spans[k, 0]
            spans[k - half, 1] = spans[k, 1]
        count -= half
    meta[0] = count


@njit(cache=True, _nrt=False)
def _stall_total(spans, meta):
    total = meta[1]
    for k in range(meta[0]):
        total += spans[k, 1] - spans[k, 0]
    return total


# -- the run ---------------------------------------------------------------------------------

@njit(cache=True)
def _simulate(code, params, trace):
    """Run a whole program (``params``: `performance_core.run_params`). Returns
    (status, info, extra, counters, grant). Memory does not grow with the program: words
    are decoded a chunk at a time, and every other record is a ring as deep as the
    hardware's queues."""
    queue_depth, token_depth = params[3], params[2]
    slots = 4
    while slots < queue_depth + 2:
        slots *= 2
    token_slots = 4
    while token_slots < 2 * token_depth + 4:
        token_slots *= 2
    # Decoded words: a ring of whole chunks, deep enough for every word still queued (at
    # most `queue_depth` per unit) behind the chunk being dispatched.
    rows = 2 * _CHUNK
    while rows < _CHUNK + 3 * queue_depth + 2:
        rows *= 2
    counters = np.zeros(12, np.int64)
    status, info, extra = _run(
        code, params,
        np.empty((rows, ROW_COLUMNS), np.int64), np.empty((4, slots, 3), np.int64),
        np.empty((4, slots), np.int64), np.empty(_RING, np.int64), np.empty(_RING, np.int64),
        np.empty(_RING, np.int64),
        np.empty((4, token_slots), np.int64), np.empty((4, token_slots), np.int64),
        np.empty((2, _SPANS, 2), np.int64), np.zeros((2, 2), np.int64), counters,
        np.zeros((14, 4), np.int64), np.zeros(_CH_SIZE, np.int64), np.zeros(4, np.int64),
        np.ones(2, np.float64), np.zeros(5, np.float64), np.zeros(3, np.int64),
        np.zeros(9, np.int64), trace)
    if status != OK:
        return status, info, extra, counters, 0
    return OK, 0, 0, counters, extra


@njit(cache=True, _nrt=False)
def _validate(code, start, ins):
    """Decode the words from ``start`` on (the exact engines decode every word before they
    run): the index of the first word that does not decode, or -1."""
    count = code.shape[0] // 2
    while start < count:
        stop = min(count, start + _CHUNK)
        bad = decode_chunk(code, start, stop, ins, 0)
        if bad >= 0:
            return bad
        start = stop
    return -1


@njit(cache=True, _nrt=False)
def _run(code, params, ins, queue,
         takes, dispatched, word_end, word_data, pushes, pops, spans, span_meta, counters,
         state, ch,
         out, fr, share, fetch_shape, pending, trace):
    """The steps of the front end and the three units, in time order (`_simulate`); the
    arrays after ``enums`` are scratch, but ``trace``: when it is not empty, the take
    cycle of each instruction (for diagnostics: `take_cycles`)."""
    rows, cols, token_depth, queue_depth, bus = params[0], params[1], params[2], params[3], \
        params[4]
    instr_base, window = params[5], params[6]
    latency, ahead, slack = params[8], params[9], params[10]
    w_ahead, w_slack, w_response, w_latency = params[11], params[12], params[13], params[14]
    count = code.shape[0] // 2
    slot_mask = queue.shape[1] - 1
    token_mask = pushes.shape[1] - 1
    ch[_CH_GRANT] = params[7]
    ch[_CH_HOLDER] = -1
    ch[_CH_QUIET] = -_INF
    for client in range(4):
        ch[_CH_LAST + client] = -1
    shift = 0              # bus == 1 << shift (a power of two: `_mod`)
    while 1 << shift < bus:
        shift += 1
    fetch_shape[0] = _WORD % bus
    fetch_shape[1] = (_WORD - 1) // bus
    fetch_shape[2] = instr_base % bus
    batch = _FETCH_BATCH
    tc = state[0:4]
    queued = state[4]
    taken_count = state[5]
    idle_from = state[6]
    settle_event = state[7]
    busy_total = state[8]
    busy_reach = state[9]
    busy_reach[:] = -_INF
    retired = state[10]
    cand = state[11]
    cand[:] = -1
    cand_gate = state[12]
    cand_ready = state[13]
    # Units whose head candidate must be found again: bit u for unit u.
    dirty = (1 << _LOAD) | (1 << _COMPUTE) | (1 << _STORE)
    stall_queue = 0
    bytes_written = 0
    # Decoded words: word w is row w & row_mask of `ins`, up to `decoded_to` - 1 (whole
    # chunks; the ring holds the chunk being dispatched and every word still queued).
    row_mask = ins.shape[0] - 1
    decoded_to = 0
    # Front end.
    asked = 0
    index = 0
    earliest = 0
    waiting_idle = False
    fe_now = 0
    fe_next = -1           # the front end's next step when it last looked (`skip`) ...
    fe_wait = 0            # ... the unit whose queue it waited for (0: none) ...
    fe_wait_taken = 0      # ... and that unit's takes then
    idle_start = 0
    last_dispatch = -1
    # Load unit.
    ld_front_free = 0
    ld_last_ar = -1
    ld_retire = -1
    ld_pushed = 0          # the last load pushed a token to compute (at `ld_retire`)
    ld_at = _INF           # the cycle its taken command's read is reserved (`pending`)
    ld_end = -1            # the last beat of its last read, and the beat its data alone
    ld_data = -1           # would end on (the rest: its addresses bound it)
    ld_own = False         # it set the reader's lines-in-flight gate (`_CH_OWN`)
    # Compute unit.
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
    cu_last_ar = -1
    # Store unit.
    st_fsm_free = 0
    output_empty = 0
    aw_free = 0
    aw_next = 0
    w_end = -1
    line_free = -1
    answered = -1
    resp_gate = -_INF
    wr_gate = -_INF
    stage_gate = -_INF
    path_raw = False
    st_last_ar = -1
    st_struct = 0
    cycles = -1
    status = OK
    info = 0
    extra = 0

    while True:
        # -- candidates of the units: the take cycle of each head (-1: not known yet) ----
        # One block per unit, not a loop: with the unit a constant, its token queues
        # (`_token_ready`) fold to the two or four it has.
        if dirty & (1 << _LOAD):
            cand[_LOAD] = -1
            visible, packed = _head(_LOAD, taken_count, queued, queue, takes, slot_mask)
            if visible >= 0:
                gate = max(visible, ld_front_free)
                _candidate(_LOAD, packed, gate, gate, token_depth, tc, pushes, pops,
                           token_mask, cand, cand_gate, cand_ready)
        if dirty & (1 << _COMPUTE):
            cand[_COMPUTE] = -1
            visible, packed = _head(_COMPUTE, taken_count, queued, queue, takes, slot_mask)
            if visible >= 0:
                structural = _compute_structural(packed, visible, loader_free, preload_from,
                                                 cu_fsm_free, drain_end)
                _candidate(_COMPUTE, packed, structural, max(visible, cu_fsm_free),
                           token_depth, tc, pushes, pops, token_mask, cand, cand_gate,
                           cand_ready)
        if dirty & (1 << _STORE):
            cand[_STORE] = -1
            visible, packed = _head(_STORE, taken_count, queued, queue, takes, slot_mask)
            if visible >= 0:
                kind = packed & 255
                gate = max(visible, st_fsm_free)
                switches = kind == K_STORE and (packed & _PK_RAW != 0) != path_raw
                if kind in (K_LOADQ, K_CONFIG) or switches:
                    structural = max(gate, output_empty)
                else:
                    structural = gate
                st_struct = structural
                _candidate(_STORE, packed, structural, gate, token_depth, tc, pushes, pops,
                           token_mask, cand, cand_gate, cand_ready)
        dirty = 0
        best = ld_at
        actor = _RESERVE if ld_at < _INF else -1
        for u in range(1, 4):
            if cand[u] >= 0 and cand[u] < best:
                actor, best = u, cand[u]
        # -- the front end: its steps up to the units' next (ties: the front end first) --
        fe_ran = False
        stop = False
        # The front end's next step as its last look found it, after `best`: it can only
        # move later (fetches and reads push the channel and the words' ends later) until
        # the unit whose queue it waits for takes, so the look is not taken again.
        skip = not waiting_idle and fe_next > best and \
            taken_count[fe_wait] == fe_wait_taken
        while not skip:
            fetch_at = _INF
            dispatch_at = _INF
            if waiting_idle:
                if taken_count[1] != queued[1] or taken_count[2] != queued[2] or \
                        taken_count[3] != queued[3]:
                    break
                now = max(fe_now, settle_event[1], settle_event[2], settle_event[3])
                if now > best:
                    break
                fe_now = now
                fe_ran = True
                waiting_idle = False
                settle = max(idle_start, idle_from[1], idle_from[2], idle_from[3])
                if ins[_slot(index - 1, row_mask), F_KIND] == K_HALT:
                    left = 0
                    for q in range(4):
                        if tc[q, _T_PUSHED] + tc[q, _T_PENDING] > tc[q, _T_POPPED]:
                            left |= 1 << q
                    if left:
                        status, info, extra = TOKENS_LEFT, index - 1, left
                    cycles = max(settle + 1, ch[_CH_QUIET] + 2) + 1
                    stop = True
                    break
                earliest = settle + 1
                continue
            if asked < count:
                if asked < FETCH_FIFO_DEPTH:
                    credit = 1
                else:
                    # The FIFO's room for the next word, or (while enough words wait in
                    # it) for `_FETCH_BATCH` words: one step fetches several words.
                    freed = asked - FETCH_FIFO_DEPTH
                    if asked - index > _FETCH_LOW and asked + batch <= count:
                        freed += batch - 1
                    credit = dispatched[_slot(freed, _RING_MASK)] + 1 if freed < index else _INF
                # After the fetch's last address (`_delay_fetch` moves it).
                fetch_at = max(ch[_CH_LAST], credit, fe_now)
            u = -1
            if index < asked:
                if index >= decoded_to:
                    # The next chunk of words.
                    decoded_to = min(count, index + _CHUNK)
                    bad = decode_chunk(code, index, decoded_to, ins, index & row_mask)
                    if bad >= 0:
                        return BAD_WORD, bad, 0
                row = _slot(index, row_mask)
                visible = max(word_end[_slot(index, _RING_MASK)] + 1 + FIFO_LATENCY,
                              last_dispatch + 1)
                dispatch_at = max(visible, earliest, fe_now)
                u = ins[row, F_ACTOR]
                if u >= 0:
                    position = queued[u]
                    if position >= queue_depth:
                        if position - queue_depth < taken_count[u]:
                            freeing = takes[u, _slot(position - queue_depth, slot_mask)]
                            dispatch_at = max(dispatch_at, freeing + 1)
                        else:
                            dispatch_at = _INF
            elif index >= count:
                status, info = PROGRAM_END, count
                stop = True
                break
            now = min(fetch_at, dispatch_at)
            if now > best or now == _INF:
                fe_next = now
                fe_wait = u if u >= 0 and dispatch_at == _INF else 0
                fe_wait_taken = taken_count[fe_wait]
                break
            fe_now = now
            fe_ran = True
            if fetch_at <= now:
                # Words dispatched before now: dispatch times rise, only the last may be now.
                before = index - 1 if index and last_dispatch >= now else index
                ask = min(count, before + FETCH_FIFO_DEPTH) - asked
                holder = ch[_CH_HOLDER]
                stolen = _fetch(ch, fr, now, asked, ask, bus, latency, ahead, slack, word_end,
                                word_data, share, fetch_shape)
                if stolen and holder == _LOAD and ld_retire > now:
                    ld_data, ld_end, ld_last_ar, ld_retire, ld_at, ld_front_free, moved = \
                        _move_load(stolen, now, ch, pending, settle_event, idle_from,
                                   busy_total, busy_reach, tc, pushes, token_mask, ld_data,
                                   ld_end, ld_last_ar, ld_retire, ld_at, ld_front_free, ld_own,
                                   ld_pushed)
                    dirty |= moved
                asked += ask
                continue
            # Dispatch word `index` now.
            dispatched[_slot(index, _RING_MASK)] = now
            last_dispatch = now
            stall_queue += now - visible
            index += 1
            if u < 0:
                waiting_idle = True
                idle_start = now + 1
                continue
            position = queued[u]
            slot = queue[u, _slot(position, slot_mask)]
            slot[_Q_INDEX] = index - 1
            slot[_Q_DISPATCHED] = now
            slot[_Q_PACKED] = ins[row, F_KIND] | ins[row, F_FLAGS] << 8 \
                | (_PK_N if ins[row, F_N] else 0) | (_PK_RAW if ins[row, F_MODE] == 1 else 0)
            queued[u] = position + 1
            if position == taken_count[u]:
                # A new head: taken FIFO_LATENCY cycles from now at the earliest, so the
                # front end's steps up to then come first (ties go to the front end).
                dirty |= 1 << u
                if now + FIFO_LATENCY < best:
                    best = now + FIFO_LATENCY
        if stop:
            break
        if fe_ran and dirty:
            # A new head: the units' candidates change. Without one they do not (they read
            # neither the read channel the fetches reserve nor the queue entries behind
            # the heads), and a second look would stop the front end where it stopped:
            # the take goes ahead without one more pass of this loop.
            continue
        if actor < 0:
            heads = count
            for u in range(1, 4):
                if taken_count[u] < queued[u]:
                    heads = min(heads, queue[u, _slot(taken_count[u], slot_mask), _Q_INDEX])
            if heads == count:
                status = DEADLOCK_EMPTY
            else:
                status, info = DEADLOCK, heads
            break

        if actor == _RESERVE:
            # -- the load unit's reader sends its command's first address -------------
            ld_at = _INF
            take = pending[_P_TAKE]
            flags = pending[_P_FLAGS]
            n = pending[_P_N]
            data_start = pending[_P_DATA_START]
            _read(ch, fr, _LOAD, pending[_P_ACCEPTED], n, pending[_P_ADDR],
                  pending[_P_STRIDE], pending[_P_LEN], data_start, bus, shift, latency,
                  ahead, slack, out, share, word_end, word_data, index, asked)
            ld_last_ar = out[0]
            ld_end = out[1]
            ld_data = out[3]
            ld_own = n >= _FLIGHT
            waited = out[2] - data_start + 1 - n
            if waited > 0:
                _stall(spans[1], span_meta[1], data_start, data_start + waited)
            finish = out[2] + 2 + pending[_P_PAD_HI]
            settle_event[_LOAD] = out[0]
            ld_retire = finish
            ld_pushed = flags & _PUSH_NEXT
            idle_from[_LOAD] = max(idle_from[_LOAD], finish + 1)
            # The load unit's own head is looked at again for its take already: nothing
            # here changes it (the read sets what its take will read, the pushes only the
            # queues' pushed counts).
            dirty |= _retire(_LOAD, flags, take, finish, finish, busy_total, busy_reach,
                             retired, tc, pushes, token_mask) & ~(1 << _LOAD)
            continue

        # -- a unit takes its head (the compute unit: and the heads after it it can) ------
        step_time = best
        while True:
            u = actor
            take = best
            position = taken_count[u]
            word = queue[u, _slot(position, slot_mask), _Q_INDEX]
            entry = ins[_slot(word, row_mask)]
            flags = entry[F_FLAGS]
            kind = entry[F_KIND]
            n = entry[F_N]
            gate = cand_gate[u]
            ready = cand_ready[u]
            stall_to = min(ready, take) if ready > gate and take > gate else gate
            if u == _STORE and st_struct > gate and take > gate:
                stall_to = max(stall_to, min(st_struct, take))
            if stall_to > gate:
                _stall(spans[0], span_meta[0], gate, stall_to)
            takes[u, _slot(position, slot_mask)] = take
            taken_count[u] = position + 1
            out[4] = 0             # beats its read (if any: `_read`) took from another's
            if trace.shape[0]:
                trace[word] = take
            settle_event[u] = take
            finish = take
            busy_last = take
            if u == _LOAD:
                _take(_LOAD, flags, take, tc, pops, token_mask)
                accepted = take + 2
                if n:
                    accepted = max(accepted, ld_last_ar)
                handoff = max(accepted + 1, ld_retire + 1)
                data_start = handoff + 2 + entry[F_PAD_LO]
                ld_front_free = handoff + 1
                idle_from[u] = max(idle_from[u], handoff + 1)
                if n:
                    # The read is reserved when the reader sends its first address, not now:
                    # fetches before then reserve the channel first (`ld_at`). Its end and
                    # pushes are known from then (the pushes are pending until then).
                    pending[_P_ACCEPTED] = accepted
                    pending[_P_TAKE] = take
                    pending[_P_DATA_START] = data_start
                    pending[_P_ADDR] = window + entry[F_DRAM]
                    pending[_P_STRIDE] = entry[F_STRIDE]
                    pending[_P_LEN] = entry[F_LEN]
                    pending[_P_N] = n
                    pending[_P_PAD_HI] = entry[F_PAD_HI]
                    pending[_P_FLAGS] = flags
                    ld_at = accepted
                    # Fence and halt wait for the read too.
                    settle_event[u] = accepted + 1
                    # Its pops happened (its pushes come with the read).
                    dirty |= 1 << _LOAD | _across(_LOAD, flags & (_POP_PREV | _POP_NEXT))
                    break      # (not a compute take: nothing more in this step)
                finish = data_start + 1 + entry[F_PAD_HI]
                ld_retire = finish
                ld_end = _INF          # no read of its own: a fetch cannot move it
                ld_pushed = flags & _PUSH_NEXT
                busy_last = finish
                idle_from[u] = max(idle_from[u], finish + 1)
            elif u == _COMPUTE:
                _take(_COMPUTE, flags, take, tc, pops, token_mask)
                if kind == K_PRELOAD:
                    back = 1 - front
                    finish = preload_end(take, entry[F_K], flags & _PUSH_NEXT,
                                         last_input1 if back else last_input0, matmul_last,
                                         drain_end, bank_ready)
                    loader_free = finish + 1
                    front = back
                    busy_last = finish
                elif kind == K_MATMUL:
                    if n:
                        matmul_last = take + n
                        if front:
                            last_input1 = take + n + 1
                        else:
                            last_input0 = take + n + 1
                        cu_fsm_free = take + n + 1
                        drain_end = take + n + pipe
                        finish = drain_end
                    else:
                        matmul_last = take + 1
                        cu_fsm_free = take + 2
                        finish = take + 1
                    preload_from = take + 1
                    busy_last = matmul_last
                elif kind == K_ALU:
                    finish = take + 2 + ALU_LATENCY + n if n else take + 2
                    cu_fsm_free = finish + 1
                    preload_from = finish + 1
                    busy_last = finish
                else:  # loadacc
                    if n:
                        accepted = max(take + 2, cu_last_ar)
                        size_of = 1 if entry[F_TYPE] == 1 else 4
                        _read(ch, fr, _COMPUTE, accepted, n, window + entry[F_DRAM],
                              entry[F_STRIDE], entry[F_LEN] * size_of, -1, bus, shift,
                              latency, ahead, slack, out, share, word_end, word_data, index, asked)
                        cu_last_ar = out[0]
                        end = out[1]
                        finish = end + 1
                        drain_end = max(drain_end, end + 2)
                        waited = end - accepted + 1 - n
                        if waited > 0:
                            _stall(spans[1], span_meta[1], accepted + 1, accepted + 1 + waited)
                        settle_event[u] = out[0]
                    else:
                        finish = take + 2
                    cu_fsm_free = finish + 1
                    preload_from = finish + 1
                    busy_last = finish
                idle_from[u] = max(idle_from[u], cu_fsm_free, drain_end + 1, loader_free)
            else:
                _take(_STORE, flags, take, tc, pops, token_mask)
                if kind == K_STORE:
                    path_raw = entry[F_MODE] == 1
                if kind == K_CONFIG:
                    finish = take + 1
                elif kind == K_LOADQ:
                    accepted = max(take + 2, st_last_ar)
                    length = 4 * entry[F_LEN]
                    _read(ch, fr, _STORE, accepted, 3, window + entry[F_DRAM], length, length,
                          -1, bus, shift, latency, ahead, slack, out, share, word_end,
                          word_data, index, asked)
                    st_last_ar = out[0]
                    end = out[1]
                    finish = end + 1
                    _stall(spans[1], span_meta[1], accepted + 1,
                           accepted + 1 + max(0, end - accepted - 2))
                    settle_event[u] = out[0]
                elif n == 0:
                    finish = take + 2
                    if flags & _PUSH_PREV:
                        finish = max(finish + 1, output_empty)
                else:
                    raw = entry[F_MODE] == 1
                    length = max(1, entry[F_LEN] * (4 if raw else 1))
                    bytes_written += n * entry[F_LEN] * (4 if raw else 1)
                    accepted = max(take + 2, aw_free)
                    addr = window + entry[F_DRAM]
                    offset = _mod(addr, bus, shift)
                    rest = _mod(entry[F_STRIDE], bus, shift)
                    whole = _div(length - 1, bus, shift)
                    part = _mod(length - 1, bus, shift)
                    total = _beats(n, offset, rest, whole, part, bus, shift)
                    b0 = _line_beats(0, offset, rest, whole, part, bus, shift)
                    b_last = _line_beats(n - 1, offset, rest, whole, part, bus, shift)
                    aw0 = max(aw_next, accepted + 1, wr_gate, resp_gate)
                    if raw:
                        taken0 = max(accepted + 2, line_free)
                        line0 = taken0
                    else:
                        taken0 = max(accepted + 2, stage_gate)
                        line0 = max(taken0 + OUTPUT_STAGE_LATENCY, line_free)
                    end0 = max(line0 + 1, aw0 + 1, w_end + 1) + b0 - 1
                    answered0 = max(end0 + w_response, aw0 + w_latency, answered + 1)
                    # Write addresses: one a cycle, at most WRITE_RESPONSES bursts without a
                    # response, at most `w_ahead` bursts ahead of their last beat.
                    offset_aw = n - 1
                    if w_latency > 0:
                        paced = ((n - 1) // WRITE_RESPONSES) * (w_latency + 1) \
                            + (n - 1) % WRITE_RESPONSES
                        if paced > offset_aw:
                            offset_aw = paced
                    aw_last = aw0 + offset_aw
                    if n > WRITE_RESPONSES:
                        gate_r = end0 + _share_of(n - WRITE_RESPONSES, total, n) - b0 \
                            + w_response + 1
                        if gate_r > aw_last:
                            aw_last = gate_r
                    if w_ahead > 0 and n > w_ahead:
                        gate_w = end0 + _share_of(n - w_ahead, total, n) - b0 - w_slack
                        if gate_w > aw_last:
                            aw_last = gate_w
                    end_last = max(end0 + total - b0, aw_last + b_last)
                    answered = max(end_last + w_response, aw_last + w_latency,
                                   answered0 + n - 1)
                    if raw:
                        taken_last = max(taken0 + n - 1, end_last - b_last)
                    elif n > 5:
                        taken_last = max(taken0 + n - 1,
                                         end_last - (total - _share_of(n - 5, total, n)))
                    else:
                        taken_last = taken0 + n - 1
                    aw_next = aw_last + 1
                    aw_free = aw_last
                    w_end = end_last
                    line_free = end_last
                    finish = taken_last
                    output_empty = answered + 1
                    if flags & _PUSH_PREV:
                        finish = max(finish + 1, output_empty)
                    # Gates the next store's first rows see.
                    if w_ahead > 0:
                        wr_gate = end_last - (total - _share_of(max(1, n - w_ahead + 1), total,
                                                                n)) - w_slack
                    span = answered - answered0
                    if n >= WRITE_RESPONSES:
                        resp_gate = answered - span * (WRITE_RESPONSES - 1) // (n - 1) + 1
                    else:
                        resp_gate = answered0 - (WRITE_RESPONSES - n) + 1
                    stage_gate = max(taken_last + OUTPUT_STAGE_LATENCY, end_last - b_last) - 3
                st_fsm_free = finish + 1
                busy_last = finish
                idle_from[u] = max(idle_from[u], st_fsm_free, output_empty)
            if out[4] and out[5] == _LOAD and ld_retire > take:
                # Its read (a LOADACC's or a LOADQ's) went between the lines of the load unit's
                # command, which still runs.
                ld_data, ld_end, ld_last_ar, ld_retire, ld_at, ld_front_free, moved = \
                    _move_load(out[4], take, ch, pending, settle_event, idle_from, busy_total,
                               busy_reach, tc, pushes, token_mask, ld_data, ld_end, ld_last_ar,
                               ld_retire, ld_at, ld_front_free, ld_own, ld_pushed)
                dirty |= moved
            # (The unit as a constant again, as in the candidates.)
            if u == _COMPUTE:
                dirty |= _retire(_COMPUTE, flags, take, busy_last, finish, busy_total,
                                 busy_reach, retired, tc, pushes, token_mask)
            elif u == _LOAD:
                dirty |= _retire(_LOAD, flags, take, busy_last, finish, busy_total, busy_reach,
                                 retired, tc, pushes, token_mask)
            else:
                dirty |= _retire(_STORE, flags, take, busy_last, finish, busy_total, busy_reach,
                                 retired, tc, pushes, token_mask)
            if u != _COMPUTE:
                break
            # The compute unit's next head, when it neither reads DRAM nor pops a token:
            # its take depends on nothing but the compute unit and its queue (its push
            # room is known or it is not taken here), so it is taken now, ahead of the
            # other parts' steps before it (none of them reads what it changes but its
            # take and push times, which are final).
            visible, packed = _head(_COMPUTE, taken_count, queued, queue, takes, slot_mask)
            if visible < 0:
                break
            kind = packed & 255
            head_flags = (packed >> 8) & 15
            if head_flags & _POP_NEXT or kind not in (K_MATMUL, K_PRELOAD, K_ALU):
                break      # (a store's token: not needed by the compiler's programs)
            if head_flags & _POP_PREV:
                # A load's token: final once pushed at or before this step's time (a
                # fetch or another read moves only a push still to come, `_move_load`).
                needed = tc[0, _T_POPPED]
                if needed >= tc[0, _T_PUSHED] or \
                        pushes[0, _slot(needed, token_mask)] > step_time:
                    break
            structural = _compute_structural(packed, visible, loader_free, preload_from,
                                             cu_fsm_free, drain_end)
            gate = max(visible, cu_fsm_free)
            ready = _token_ready(_COMPUTE, head_flags, token_depth, tc, pushes, pops,
                                 token_mask)
            if ready < 0:
                break
            actor = _COMPUTE
            best = max(structural, ready)
            cand_gate[_COMPUTE] = gate
            cand_ready[_COMPUTE] = ready

    # Every word decodes in the exact engines before they run: a bad one wins.
    bad = _validate(code, decoded_to, ins)
    if bad >= 0:
        return BAD_WORD, bad, 0
    if status != OK:
        return status, info, extra
    counters[0] = cycles
    for u in range(1, 4):
        counters[u] = busy_total[u]
    counters[4] = _stall_total(spans[0], span_meta[0])
    counters[5] = _stall_total(spans[1], span_meta[1])
    counters[6] = stall_queue
    counters[7] = ch[_CH_BEATS] * bus
    counters[8] = bytes_written
    for u in range(1, 4):
        counters[8 + u] = retired[u]
    return OK, 0, ch[_CH_GRANT]


# -- Python side ------------------------------------------------------------------------------

#: The ``trace`` of a run without one: never written (a new empty array costs about a
#: microsecond per run, a tenth of a short program's).
_NO_TRACE = np.empty(0, np.int64)


def run_analytic(config: AcceleratorConfig, memory: MemoryTiming, code: np.ndarray,
                 instr_base: int, window_base: int, grant: int, *, trace: bool = False):
    """Run the analytic engine on ``code`` (`performance_core.words_to_code`); returns
    (counters as an int64 array in `COUNTERS` order, grant), or raises what the exact
    engines raise for the program. With ``trace``, also the take cycle of every
    instruction (-1: fence, halt or not reached), to compare with the exact engine's."""
    params = core.run_params(config, memory, instr_base, window_base, grant)
    code = core.checked_code(code)
    takes = np.full(len(code) // 2, -1, np.int64) if trace else _NO_TRACE
    status, info, extra, counters, end_grant = _simulate(code, params, takes)
    if status != OK:
        core.raise_status(status, info, extra, code)
    return (counters, int(end_grant), takes) if trace else (counters, int(end_grant))
