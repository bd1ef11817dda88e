"""Two processes under gloo with the same global batch compute exactly the gradients of one process.

Each process takes half of every global batch (the same random draws on both, sliced) and the
gradients are averaged with all_reduce; the averaged gradients of every phase of an iteration (G main
path length, D main, R1) must equal those of a single process. Parameters
are not compared: Adam's first steps are ±lr wherever a gradient is at rounding level, so parameter
values amplify harmless float differences; the learning rate is ~0 so all phases see the same weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from realface.train.loop import TrainConfig, Trainer


def _cfg(setup, out):
    return TrainConfig(
        data=setup["data"],
        real=setup["pkl"],
        out=str(out),
        kimg=0.004,
        batch=4,
        kimg_per_tick=0.004,
        snap=1,
        workers=0,
        lpips_vgg=setup["vgg"],
        grid_size=2,
        seed=3,
        ada=False,
    )


def _recording_trainer(cfg: TrainConfig) -> tuple[Trainer, list[list[torch.Tensor]]]:
    t = Trainer(cfg)
    # Minibatch-std groups must lie within one process's samples for the set-ups to be equal: group
    # size 2 makes the groups {0, 2} and {1, 3} of the global batch, i.e. one per process.
    t.D.b4.mbstd.group_size = 2
    record: list[list[torch.Tensor]] = []
    for opt in (t.opt_G, t.opt_D):
        params = [p for g in opt.param_groups for p in g["params"]]

        def step(*a, _orig=opt.step, _params=params, **k):
            record.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in _params])
            return _orig(*a, **k)

        opt.step = step
    return t, record


def _worker(rank: int, world: int, store: str, cfg: TrainConfig, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        t, record = _recording_trainer(cfg)
        t.run(progress=False)
        if rank == 0:
            torch.save({f"{i}.{j}": g for i, grads in enumerate(record) for j, g in enumerate(grads)}, out)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process(setup, tmp_path):
    single, record = _recording_trainer(_cfg(setup, tmp_path / "one"))
    single.run(progress=False)
    want = {f"{i}.{j}": g for i, grads in enumerate(record) for j, g in enumerate(grads)}
    assert len(record) == 4  # G main, path length, D main, R1

    out = tmp_path / "two.pt"
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "store"), _cfg(setup, tmp_path / "two"), str(out)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    got = torch.load(out, weights_only=True)
    assert set(got) == set(want)
    nonzero = 0
    for phase in range(len(record)):
        keys = sorted((k for k in want if k.startswith(f"{phase}.")), key=lambda k: int(k.split(".")[1]))
        a = torch.cat([want[k].flatten() for k in keys])
        b = torch.cat([got[k].flatten() for k in keys])
        # Whole-phase relative error. float32 rounding with batch-size-dependent kernels gives 2e-3 to
        # 1.3e-2 here (measured: G main 3e-3, R1 1.3e-2 through its double backward; the same split
        # computed in one process, full batch vs mean of the two halves, already differs by 2e-3);
        # a wrong split, a missing average or a wrong sample order gives ~1.
        rel = float((a - b).norm() / a.norm())
        assert rel < 5e-2, f"phase {phase}: relative gradient error {rel:.2e}"
        assert float((a - b).abs().max()) <= 5e-2 * float(a.abs().max()), f"phase {phase}"
        nonzero += sum(int(float(want[k].abs().max()) > 0) for k in keys)
    assert nonzero > 0.5 * len(want)  # the gradients are real, so the comparison is not vacuous
