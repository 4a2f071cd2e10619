"""DDP: a non-finite loss on one rank stops every rank together, with the same message."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from heatmapnet.distributed import DistInfo, values_over_ranks
from heatmapnet.engine import describe_losses

# One rank of a two-process gloo run of heatmapnet's trainer on synthetic faces, whose criterion
# returns NaN on rank 1 at its second call. Prints the stop message and how many DDP wrappers are
# still alive (each holds the process group: one left for the interpreter's shutdown to free made
# gloo abort the process now and then, exit -6) and exits 3 on NonFiniteLossError; exit 0 would
# mean it trained on.
RANK_SCRIPT = textwrap.dedent("""
    import sys
    from heatmapnet import engine
    from heatmapnet.config import load_config

    built = engine.Trainer.__init__

    def init(self, *args, **kwargs):
        built(self, *args, **kwargs)
        criterion, calls = self.criterion, {"n": 0}

        def nan_on_rank_1(*inputs):
            calls["n"] += 1
            loss = criterion(*inputs)
            return loss * float("nan") if self.dist.rank == 1 and calls["n"] == 2 else loss

        nan_on_rank_1.target_keys = criterion.target_keys
        self.criterion = nan_on_rank_1

    engine.Trainer.__init__ = init
    try:
        engine.train_from_config(load_config("synthetic_faces", sys.argv[2:]), sys.argv[1])
    except engine.NonFiniteLossError as error:
        print(f"STOPPED: {error}", flush=True)
        import gc, torch
        wrappers = [o for o in gc.get_objects() if isinstance(o, torch.nn.parallel.DistributedDataParallel)]
        print(f"DDP WRAPPERS ALIVE: {len(wrappers)}", flush=True)
        sys.exit(3)
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # two processes importing torch and building a trainer: about 25 s on two cores
def test_a_nan_loss_on_one_rank_stops_both_ranks_with_the_same_message(tmp_path, tiny_run):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    overrides = tiny_run(**{"data.input_size": "[32,32]", "model.head_channels": 8, "train.batch_size": 4,
                            "train.checkpoint_every": 1000, "train.lr": 0.002})
    port = _free_port()
    processes = []
    for rank in range(2):  # plain processes, no torchrun agent that would kill the survivor for us
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), *overrides], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=150))
    except subprocess.TimeoutExpired:
        pytest.fail("a rank hung: the others did not learn that one rank's loss was NaN")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
    stops = []
    for rank, (process, (out, err)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 3, f"rank {rank} exited {process.returncode}: {err[-1500:]}"
        stops.append([line for line in out.splitlines() if line.startswith("STOPPED: ")])
        assert "DDP WRAPPERS ALIVE: 0" in out.splitlines(), f"rank {rank} left the process group held: {out[-300:]}"
    assert stops[0] == stops[1] and len(stops[0]) == 1
    assert stops[0][0].startswith("STOPPED: training stopped at step 2: the loss is nan on rank 1 (of 2; rank 0: ")
    assert "No checkpoint of this run was written yet" in stops[0][0]


def test_values_over_ranks_of_one_process_is_its_own_value():
    assert values_over_ranks(torch.tensor(0.25), DistInfo()) == [0.25]


def test_the_stop_message_names_the_ranks_whose_loss_is_not_finite():
    assert describe_losses([float("nan")]) == "the loss is nan"
    assert describe_losses([0.5, float("nan"), 0.25, float("inf")]) == \
        "the loss is nan on rank 1, inf on rank 3 (of 4; rank 0: 0.5, rank 2: 0.25)"
