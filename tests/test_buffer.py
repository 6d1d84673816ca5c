import pytest
import torch

from mbrl_lightning.data import ReplayBuffer


def batch(n, obs_dim=3, act_dim=2, start=0):
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return {"obs": ids[:, None].repeat(1, obs_dim), "act": ids[:, None].repeat(1, act_dim),
            "next_obs": ids[:, None].repeat(1, obs_dim) + 1, "reward": ids, "terminated": ids % 2 == 0}


def test_wraps_and_keeps_newest():
    buf = ReplayBuffer(10, 3, 2)
    buf.add(batch(7))
    buf.add(batch(7, start=7))
    assert len(buf) == 10 and buf.total_added == 14
    kept = sorted(buf.all()["reward"].tolist())
    assert kept == list(range(4, 14))  # the 4 oldest were overwritten
    buf.add(batch(25, start=100))  # larger than capacity: only the newest 10 survive
    assert sorted(buf.all()["reward"].tolist()) == list(range(115, 125))
    assert buf.total_added == 39


def test_state_dict_round_trip_through_torch_save(tmp_path):
    buf = ReplayBuffer(8, 3, 2)
    buf.add(batch(11))
    path = tmp_path / "buf.pt"
    torch.save(buf.state_dict(), path)
    other = ReplayBuffer(8, 3, 2)
    other.load_state_dict(torch.load(path, weights_only=True))
    for k, v in buf.all().items():
        assert torch.equal(v, other.all()[k])
    assert (other.ptr, other.size, other.total_added) == (buf.ptr, buf.size, buf.total_added)
    other.add(batch(1, start=50))  # continues writing at the same slot
    buf.add(batch(1, start=50))
    assert torch.equal(buf.reward, other.reward)


def test_load_refuses_other_env_dims():
    buf = ReplayBuffer(8, 3, 2)
    buf.add(batch(2))
    with pytest.raises(ValueError, match="obs_dim"):
        ReplayBuffer(8, 4, 2).load_state_dict(buf.state_dict())


@pytest.mark.parametrize(
    "field,value,error,match",
    [
        ("obs", torch.zeros(5, 4), ValueError, "'obs' has shape"),
        ("act", torch.zeros(5), ValueError, "'act' has shape"),
        ("reward", torch.zeros(4), ValueError, "disagree"),
        ("terminated", torch.zeros(5), TypeError, "'terminated' must be bool"),
        ("obs", torch.full((5, 3), float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_input_names_the_field(field, value, error, match):
    buf = ReplayBuffer(8, 3, 2)
    b = batch(5)
    b[field] = value
    with pytest.raises(error, match=match):
        buf.add(b)
    assert len(buf) == 0


def test_missing_field():
    b = batch(3)
    del b["next_obs"]
    with pytest.raises(KeyError, match="next_obs"):
        ReplayBuffer(8, 3, 2).add(b)


def test_checkpointed_ring_goes_on_as_if_never_saved_after_it_wrapped(tmp_path):
    """Save/load through the DataModule state (what a checkpoint holds) with the write pointer mid-ring."""
    from mbrl_lightning.data import ReplayDataModule

    def make():
        return ReplayDataModule("mbrl/Obstacles-v0", capacity=10, batch_size=4, steps_per_epoch=1)

    def rows(n, start):
        b = batch(n, obs_dim=4, start=start)
        return {**b, "act": b["act"][:, :2]}

    uninterrupted, saved = make(), make()
    for dm in (uninterrupted, saved):
        dm.add(rows(7, 0))
        dm.add(rows(6, 100))
    assert saved.buffer.ptr == 3 and len(saved.buffer) == 10  # wrapped, pointer mid-ring
    torch.save(saved.state_dict(), tmp_path / "dm.pt")
    resumed = make()
    resumed.load_state_dict(torch.load(tmp_path / "dm.pt", weights_only=True))
    for n, start in ((2, 200), (9, 300)):  # the next writes land where they would have, wrapping again
        uninterrupted.add(rows(n, start))
        resumed.add(rows(n, start))
        for field in ("obs", "act", "next_obs", "reward", "terminated"):
            assert torch.equal(getattr(resumed.buffer, field), getattr(uninterrupted.buffer, field)), field
        assert (resumed.buffer.ptr, resumed.buffer.total_added) == (uninterrupted.buffer.ptr,
                                                                     uninterrupted.buffer.total_added)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(resumed.buffer.sample(20, gen_a)["reward"], uninterrupted.buffer.sample(20, gen_b)["reward"])


def test_resize_keeps_the_newest_rows_and_writes_on_after_them():
    buf = ReplayBuffer(10, 3, 2)
    buf.add(batch(13))  # wrapped: holds 3..12, the write pointer mid-storage
    buf.resize(4)  # shrink: only the 4 newest survive
    assert buf.capacity == 4 and len(buf) == 4 and buf.total_added == 13
    assert sorted(buf.all()["reward"].tolist()) == [9, 10, 11, 12]
    assert torch.equal(buf.all()["next_obs"][:, 0], buf.all()["reward"] + 1)  # rows stay whole
    buf.add(batch(1, start=13))  # the oldest (9) goes first
    assert sorted(buf.all()["reward"].tolist()) == [10, 11, 12, 13]
    buf.resize(6)  # grow: everything stays, room for two more before anything is overwritten
    buf.add(batch(2, start=14))
    assert sorted(buf.all()["reward"].tolist()) == [10, 11, 12, 13, 14, 15]
    buf.add(batch(1, start=16))
    assert sorted(buf.all()["reward"].tolist()) == [11, 12, 13, 14, 15, 16]
    assert buf.all()["terminated"].tolist() == [r % 2 == 0 for r in buf.all()["reward"].tolist()]
