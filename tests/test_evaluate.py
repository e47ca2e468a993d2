"""Evaluation: per-sample mean loss, checked against the tutorial's test_loop and a brute-force loop."""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optbench.evaluate import (TUTORIAL_TEST_BATCH, VECTOR_LANES, class_log_probs, evaluate_checkpoints,
                               evaluate_split, split_metrics)
from optbench.train import init_model
from tests.tutorial import test_loop as tutorial_test_loop


@pytest.fixture
def model(mnist1d_tensors):
    torch.manual_seed(0)
    return init_model(mnist1d_tensors["x_train"], [32], seed=5)


def test_matches_the_tutorial_test_loop_when_batches_are_equal(model, mnist1d_tensors):
    x, y = mnist1d_tensors["x_val"], mnist1d_tensors["y_val"]  # 400 = 4 × 100
    tutorial_loss, tutorial_acc = tutorial_test_loop(DataLoader(TensorDataset(x, y), batch_size=100), model,
                                            nn.CrossEntropyLoss())
    loss, accuracy = evaluate_split(model, x, y, batch_size=1000)
    assert loss == pytest.approx(tutorial_loss, rel=1e-6)
    assert accuracy == tutorial_acc


def test_is_the_per_sample_mean_whatever_the_chunking(model, mnist1d_tensors):
    x, y = mnist1d_tensors["x_test"], mnist1d_tensors["y_test"]
    with torch.no_grad():
        brute = sum(nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).item() for i in range(len(x))) / len(x)
    for chunk in (1000, 300, 7):
        assert evaluate_split(model, x, y, chunk)[0] == pytest.approx(brute, rel=1e-6)
    # the tutorial's mean of batch means differs when the last batch is smaller (1000 = 3 × 300 + 100)
    tutorial_loss, _ = tutorial_test_loop(DataLoader(TensorDataset(x, y), batch_size=300), model, nn.CrossEntropyLoss())
    assert tutorial_loss != pytest.approx(brute, rel=1e-6)


@pytest.mark.parametrize("split", ["test", "val"])  # 1000 = 15 × 64 + 40 samples; 400 = 6 × 64 + 16
def test_tutorial_avg_loss_is_the_tutorial_test_loops_mean_of_batch_means(model, mnist1d_tensors, split):
    x, y = mnist1d_tensors[f"x_{split}"], mnist1d_tensors[f"y_{split}"]
    assert TUTORIAL_TEST_BATCH == 64 and len(x) % 64 != 0
    avg_loss, accuracy = tutorial_test_loop(DataLoader(TensorDataset(x, y), batch_size=64), model,
                                            nn.CrossEntropyLoss())
    for chunk in (1000, 64, 7):  # the forward chunk changes nothing but rounding
        metrics = split_metrics(model, x, y, chunk)
        assert metrics["tutorial_avg_loss"] == pytest.approx(avg_loss, rel=1e-6)
        assert metrics["accuracy"] == accuracy
        # with a smaller last batch the mean of batch means is not the per-sample mean the project reports
        assert metrics["loss"] != pytest.approx(avg_loss, rel=1e-6)
        assert metrics["loss"] == evaluate_split(model, x, y, chunk)[0]


def test_checkpoints_without_weights_evaluate_to_infinite_loss(model, mnist1d_tensors):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    bundle = {"steps": torch.tensor([0, 10, 20]), "states": [state, state, None], "steps_per_epoch": 10}
    table = evaluate_checkpoints(model, bundle, mnist1d_tensors, 1000)
    assert len(table) == 9 and set(table["split"]) == {"train", "val", "test"}
    last = table[table["step"] == 20]
    assert (last["loss"] == math.inf).all() and last["accuracy"].isna().all() and not last["has_weights"].any()
    assert (last["tutorial_avg_loss"] == math.inf).all() and table["tutorial_avg_loss"].iloc[:6].between(1.5, 4).all()
    first = table[table["step"] == 0]
    assert first["loss"].between(1.5, 4).all() and list(table["epoch"].unique()) == [0.0, 1.0, 2.0]


def test_loss_is_bit_for_bit_the_chunks_summed_cross_entropy(model, mnist1d_tensors):
    """One log-softmax per chunk serves both reductions (issue 14: it was computed twice, ~30 % of an
    evaluate job): the numbers eval.csv holds stay those of F.cross_entropy(reduction='sum') per chunk
    and of its per-sample values, bit for bit, finite or not."""
    x, y = mnist1d_tensors["x_train"][:2500], mnist1d_tensors["y_train"][:2500]
    blown = init_model(x, [32], seed=5)
    with torch.no_grad():
        blown[-1].weight.mul_(1e38)  # logits overflow to ±inf: the loss is inf or NaN, as in a diverged run
    for net in (model, blown):
        net.eval()
        for chunk in (1000, 7):
            with torch.no_grad():
                total, per_sample = 0.0, []
                for start in range(0, len(x), chunk):
                    logits, target = net(x[start:start + chunk]), y[start:start + chunk]
                    total += nn.functional.cross_entropy(logits, target, reduction="sum").item()
                    per_sample.append(nn.functional.cross_entropy(logits, target, reduction="none"))
                losses = torch.cat(per_sample)
            metrics = split_metrics(net, x, y, chunk)
            expected = total / len(x)
            assert metrics["loss"] == (expected if math.isfinite(expected) else math.inf)
            full = len(losses) // TUTORIAL_TEST_BATCH * TUTORIAL_TEST_BATCH
            means = torch.cat([losses[:full].view(-1, TUTORIAL_TEST_BATCH).mean(1).double(),
                               losses[full:].mean().double().view(1)])
            tutorial = float(means.sum()) / len(means)
            assert metrics["tutorial_avg_loss"] == (tutorial if math.isfinite(tutorial) else math.inf)


@pytest.mark.parametrize("classes", [2, 3, 7, 8, 10, 15, 16, 17, 40])
@pytest.mark.parametrize("samples", [1, 37, 1000, 4097])
def test_class_log_probs_have_the_plain_kernels_bits(classes, samples):
    """Whichever path this machine's CPU capability takes (issue 14: over the classes as the first
    dimension where there are fewer of them than vector lanes), the log-probabilities are
    F.log_softmax(·, 1)'s, bit for bit: at every scale, with ties, ±inf and NaN logits."""
    generator = torch.Generator().manual_seed(100_000 * classes + samples)
    for scale in (0.1, 1.0, 30.0):
        logits = torch.randn(samples, classes, generator=generator) * scale
        logits[::3] = logits[::3].round()  # ties
        logits[0, classes // 2] = math.inf
        if samples > 2:
            logits[1, -1], logits[2] = math.nan, -math.inf
        torch.testing.assert_close(class_log_probs(logits), nn.functional.log_softmax(logits, 1), rtol=0, atol=0,
                                   equal_nan=True)


def test_few_classes_take_the_class_first_kernels_where_the_vectors_have_the_lanes(monkeypatch):
    lanes = VECTOR_LANES.get(torch.backends.cpu.get_cpu_capability(), 0)
    if lanes <= 10:
        pytest.skip(f"{torch.backends.cpu.get_cpu_capability()}: 10 classes take the plain kernels here")
    dims, plain = [], nn.functional.log_softmax
    monkeypatch.setattr(nn.functional, "log_softmax", lambda x, dim: dims.append(dim) or plain(x, dim))
    for classes in (10, lanes):
        class_log_probs(torch.randn(100, classes))
    assert dims == [0, 1]
