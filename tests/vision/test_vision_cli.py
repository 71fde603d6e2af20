"""End-to-end tests of the vision commands (fairseq_shiftadd.vision.cli) and of resumable training."""
import json

import pytest
import torch

from fairseq_shiftadd.vision import cli
from fairseq_shiftadd.vision.data import load_digits
from fairseq_shiftadd.vision.models import VisionNet
from fairseq_shiftadd.vision.space import get_space, load_subnet, smallest
from fairseq_shiftadd.vision.train import TrainConfig, classifier_loss, evaluate, fit, load_checkpoint, parameter_groups


def test_train_search_retrain_on_digits(tmp_path):
    sn, search, rt = tmp_path / "sn", tmp_path / "search", tmp_path / "rt"
    cli.main(["train", "--save-dir", str(sn), "--epochs", "1", "--no-progress", "--sharing", "heterogeneous"])
    meta = load_checkpoint(sn / "checkpoint_last.pt")["meta"]
    assert meta["run"]["sharing"] == "heterogeneous" and meta["config"]["seed"] == 1
    cli.main(["search", "--supernet", str(sn / "checkpoint_last.pt"), "--save-dir", str(search), "--population", "4",
              "--parents", "2", "--mutations", "1", "--crossovers", "1", "--generations", "2",
              "--constraint", "conv_energy_ratio<=0.8", "--calibration-batches", "1", "--no-progress"])
    for name in ("best.yaml", "candidates.csv", "search.png", "state.json"):
        assert (search / name).is_file(), name
    best = load_subnet(search / "best.yaml")
    cli.main(["retrain", "--subnet", str(search / "best.yaml"), "--save-dir", str(rt), "--epochs", "1",
              "--no-progress"])
    results = json.loads((rt / "results.json").read_text())
    assert results["subnet"] == best.to_dict() and results["conv_energy_ratio"] <= 0.8
    checkpoint = load_checkpoint(rt / "checkpoint_best.pt")  # the reported accuracy is the best checkpoint's
    model = VisionNet(get_space("digits"), best, checkpoint["meta"]["run"]["shift_mode"])
    model.load_state_dict(checkpoint["model"])
    assert results["test_accuracy"] == evaluate(model.eval(), load_digits().test)["accuracy"]
    assert results["best_epoch"] == checkpoint["epoch"] == 1
    cli.main(["retrain", "--subnet", str(search / "best.yaml"), "--init-from", str(sn / "checkpoint_last.pt"),
              "--save-dir", str(tmp_path / "ft"), "--epochs", "1", "--no-progress"])
    assert json.loads((tmp_path / "ft" / "results.json").read_text())["subnet"] == best.to_dict()


def test_killed_training_continues_to_the_same_result(tmp_path):
    data = load_digits()
    data.train.images, data.train.labels = data.train.images[:128], data.train.labels[:128]
    space = get_space("digits")
    config = TrainConfig(epochs=2, batch_size=32, seed=3, augment_shift=1)

    def run(save_dir, kill_after=None):
        torch.manual_seed(0)
        model = VisionNet(space, smallest(space))
        calls = []

        def valid(m):
            calls.append(1)
            if kill_after is not None and len(calls) > kill_after:
                raise KeyboardInterrupt
            return {"loss": 0.0, "accuracy": 0.5}

        fit(model, classifier_loss(config), data, config, save_dir, {"run": 1}, valid_fn=valid, progress=False)
        return model

    reference = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill_after=1)
    assert load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["epoch"] == 1
    resumed = run(tmp_path / "b")
    for (name, p), q in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(p.float(), q.float(), atol=1e-6), name
    with pytest.raises(ValueError, match="was written by another run"):
        fit(VisionNet(space, smallest(space)), classifier_loss(config), data,
            TrainConfig(epochs=3, batch_size=32), tmp_path / "b", {"run": 1}, progress=False)
    state = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")  # as written before parameter_groups
    groups = state["optimizer"]["param_groups"]
    state["optimizer"]["param_groups"] = [{**groups[0], "params": groups[0]["params"] + groups[1]["params"]}]
    torch.save(state, tmp_path / "b" / "checkpoint_last.pt")
    with pytest.raises(ValueError, match="written by an older version"):
        run(tmp_path / "b")


def test_weight_decay_spares_biases_and_norm_scales():
    model = VisionNet(get_space("digits"), smallest(get_space("digits")))
    decayed, spared = parameter_groups(model, 0.5)
    assert decayed["weight_decay"] == 0.5 and spared["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    assert sorted(map(id, decayed["params"] + spared["params"])) == sorted(names)  # each parameter once
    assert {names[id(p)].rsplit(".", 1)[-1] for p in spared["params"]} >= {"bias"}
    assert all(p.dim() >= 2 for p in decayed["params"]) and all(p.dim() < 2 for p in spared["params"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # zero gradients: only the decoupled decay moves a parameter, by the factor 1 - lr * wd
    for name, p in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if p.dim() >= 2 else 1.0
        assert torch.allclose(p.detach(), before[name] * factor), name


@pytest.mark.parametrize("argv,message", [
    (["retrain", "--subnet", '{"stages": [{"width": 17, "blocks": []}]}'], "subnet has 1 stages"),
    (["retrain", "--subnet", "missing.yaml"], "--subnet 'missing.yaml': no such file"),
    (["train", "--dataset", "cifar"], "dataset 'cifar' needs --data-dir"),
    (["train", "--dataset", "folder", "--space", "cifar", "--image-size", "30"],
     "image_size=30 cannot be taken by space 'cifar'"),
    (["search", "--supernet", "nothing.pt"], "checkpoint 'nothing.pt' not found"),
])
def test_bad_input_exits_with_one_line(tmp_path, capsys, argv, message):
    command, *rest = argv
    data_dir = ["--data-dir", str(tmp_path)] if "folder" in argv else []
    with pytest.raises(SystemExit) as exit_info:
        cli.COMMANDS[command](rest + data_dir + ["--save-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_cifar_directory_in_the_wrong_format(tmp_path, capsys):
    (tmp_path / "data_batch_1").write_bytes(b"x")
    with pytest.raises(SystemExit):
        cli.train_main(["--dataset", "cifar", "--data-dir", str(tmp_path), "--save-dir", str(tmp_path / "o")])
    assert "is not in the CIFAR python format" in capsys.readouterr().err
