"""The read arbiter: every client gets exactly its own bursts' beats, in order, while a
responder interleaves the beats of different IDs and stalls at random."""

import random

from amaranth.sim import Simulator

from gemmstone.hw.axi_arbiter import AxiReadArbiter

CLIENTS = 3
BURSTS = 12  # per client


def beat_value(address, beat):
    return (address * 7 + beat * 13) & 0xFFFF_FFFF


def test_arbiter_routes_interleaved_responses_to_their_clients():
    rng = random.Random(11)
    dut = AxiReadArbiter(clients=CLIENTS, data_bytes=4)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    requests = {i: [(0x1000 * (i + 1) + 64 * k, rng.randrange(4)) for k in range(BURSTS)]
                for i in range(CLIENTS)}
    received = {i: [] for i in range(CLIENTS)}
    accepted = []  # (arid, address, arlen) in bus order

    def client_process(i):
        async def process(ctx):
            port = dut.client(i)
            for address, length in requests[i]:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(port.araddr, address)
                ctx.set(port.arlen, length)
                ctx.set(port.arvalid, 1)
                await ctx.tick().until(port.arready)
                ctx.set(port.arvalid, 0)
        return process

    def receiver_process(i):
        async def process(ctx):
            port = dut.client(i)
            expected = sum(length + 1 for _, length in requests[i])
            while len(received[i]) < expected:
                ready = rng.random() < 0.7
                ctx.set(port.rready, ready)
                _, _, valid, data, last = await ctx.tick().sample(port.rvalid, port.rdata,
                                                                  port.rlast)
                if valid and ready:
                    received[i].append((data, last))
        return process

    async def responder(ctx):
        bus = dut.bus
        pending = {i: [] for i in range(CLIENTS)}  # beats to send, per ID, in order
        total = CLIENTS * BURSTS
        while len(accepted) < total or any(pending.values()):
            address_ready = rng.random() < 0.6
            ctx.set(bus.arready, address_ready)
            ids = [i for i in range(CLIENTS) if pending[i]]
            sending = rng.choice(ids) if ids and rng.random() < 0.8 else None
            ctx.set(bus.rvalid, sending is not None)
            if sending is not None:
                data, last = pending[sending][0]
                ctx.set(bus.rid, sending)
                ctx.set(bus.rdata, data)
                ctx.set(bus.rlast, last)
            # Handshakes happen at the clock edge: sample both sides there.
            _, _, arvalid, arid, address, length, rready = await ctx.tick().sample(
                bus.arvalid, bus.arid, bus.araddr, bus.arlen, bus.rready)
            if sending is not None and rready:
                pending[sending].pop(0)
            if arvalid and address_ready:
                accepted.append((arid, address, length))
                pending[arid] += [(beat_value(address, b), b == length)
                                  for b in range(length + 1)]
        ctx.set(bus.rvalid, 0)

    for i in range(CLIENTS):
        sim.add_testbench(client_process(i), background=True)
        sim.add_testbench(receiver_process(i))
    sim.add_testbench(responder)
    sim.run()

    for i in range(CLIENTS):
        assert [(a, n) for arid, a, n in accepted if arid == i] == requests[i]
        expected = [(beat_value(a, b), b == n) for a, n in requests[i] for b in range(n + 1)]
        assert received[i] == expected
