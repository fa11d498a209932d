"""Campaign store: on-disk format, torn/corrupt files, duplicates, refusing mismatches."""

import json
import zlib

import pytest

from naive_campaign import read_records
from numharden.campaign import CampaignConfig, SyntheticSpec
from numharden.campaign.spec import check_spec
from numharden.campaign.store import CampaignStore
from numharden.errors import ConfigError, FormatError

CFG = CampaignConfig(bers=[1e-5, 1e-4], trials=4, seed=3)
SPEC = SyntheticSpec(n_images=100)


def _store(path, cfg=CFG, spec=SPEC):
    desc, checksum = check_spec(spec)
    return CampaignStore.create_or_open(path, cfg, desc, checksum)


def _fill(store, n=6):
    runner = SPEC.build()
    keys = [(None, b, t) for b in CFG.bers for t in range(3)][:n]
    with store.writer() as w:
        for g, b, t in keys:
            w.write((g, b, t, 1000 + t), runner(b, t, 1000 + t), 0.01, "test-worker")
    return w.path, keys


def test_header_and_record_format(tmp_path):
    st = _store(tmp_path / "c")
    head = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert head["format"] == "numharden-campaign" and head["version"] == 1
    assert head["config"] == json.loads(json.dumps(CFG.to_dict()))
    assert head["spec"] == SPEC.describe()
    assert head["model_checksum"] == SPEC.model_checksum()
    assert head["campaign_key"] == st.key and len(st.key) == 16
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["campaign.json", "records"]
    path, keys = _fill(st)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 7
    for line in lines[:-1]:  # <json>\t<crc32 of the json, 8 hex digits>
        body, crc = line.rsplit(b"\t", 1)
        assert int(crc, 16) == zlib.crc32(body)
        rec = json.loads(body)
        assert rec["key"] == st.key and rec["worker"] == "test-worker"
        for k in ("group", "ber", "trial", "seed", "n_faults", "correct", "sdc", "nonfinite",
                  "n_masked", "n_images", "duration", "time"):
            assert k in rec
    loaded = st.load()
    assert set(loaded.records) == set(keys) and loaded.files == 1 and not loaded.torn
    assert loaded.records == read_records(tmp_path / "c")


def test_reopen_same_campaign_keeps_header(tmp_path):
    st = _store(tmp_path / "c")
    before = (tmp_path / "c" / "campaign.json").read_bytes()
    st2 = _store(tmp_path / "c")
    CampaignStore._write_header(tmp_path / "c", {"format": "other"})  # loses the race
    assert (tmp_path / "c" / "campaign.json").read_bytes() == before
    assert st2.key == st.key and CampaignStore.open(tmp_path / "c").key == st.key
    assert not list((tmp_path / "c").glob("campaign.json.tmp-*"))


@pytest.mark.parametrize("tail", [b'{"key": "abc", "gro', b"\x00" * 40, b"garbage\t1234"])
def test_torn_last_line_is_skipped(tmp_path, tail):
    st = _store(tmp_path / "c")
    path, keys = _fill(st)
    with open(path, "ab") as f:
        f.write(tail)
    loaded = st.load()
    assert set(loaded.records) == set(keys) and loaded.torn == [path.name]


def test_corrupt_complete_last_line_is_skipped(tmp_path):
    st = _store(tmp_path / "c")
    path, keys = _fill(st)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01  # flip one bit inside the last record
    path.write_bytes(bytes(data))
    loaded = st.load()
    assert set(loaded.records) == set(keys[:-1]) and loaded.torn == [path.name]


def test_corrupt_middle_line_is_an_error(tmp_path):
    st = _store(tmp_path / "c")
    path, _ = _fill(st)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"trial":', b'"trial" :')  # JSON still valid, CRC not
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(FormatError, match=r"line 3 is corrupt.*move the file out"):
        st.load()


def test_duplicates_merge_and_conflicts_are_reported(tmp_path):
    st = _store(tmp_path / "c")
    path, keys = _fill(st)
    copy = path.with_name("other-1-00.jsonl")
    copy.write_bytes(path.read_bytes())
    loaded = st.load()
    assert set(loaded.records) == set(keys) and loaded.duplicates == len(keys)
    # a re-run that disagrees is corruption (non-deterministic runner / changed model)
    lines = copy.read_bytes().split(b"\n")
    rec = json.loads(lines[0].rsplit(b"\t", 1)[0])
    rec["correct"] += 1
    body = json.dumps(rec).encode()
    lines[0] = body + b"\t" + f"{zlib.crc32(body):08x}".encode()
    copy.write_bytes(b"\n".join(lines))
    with pytest.raises(FormatError, match="different results.*not deterministic"):
        st.load()


def test_record_of_another_campaign_is_refused(tmp_path):
    a = _store(tmp_path / "a")
    b = _store(tmp_path / "b", cfg=CampaignConfig(bers=[1e-5], trials=4, seed=9))
    path, _ = _fill(a)
    (tmp_path / "b" / "records" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(FormatError, match="belongs to campaign"):
        b.load()


@pytest.mark.parametrize("content, match", [
    (b"{not json", "not valid JSON"), (b"", "not valid JSON"),
    (b'{"format": "something-else"}', "not a numharden campaign header"),
    (b'[1, 2]', "not a numharden campaign header"),
])
def test_damaged_header(tmp_path, content, match):
    _store(tmp_path / "c")
    (tmp_path / "c" / "campaign.json").write_bytes(content)
    for call in (lambda: CampaignStore.open(tmp_path / "c"), lambda: _store(tmp_path / "c")):
        with pytest.raises(FormatError, match=match + ".*different --out|" + match):
            call()


def test_edited_header_is_detected(tmp_path):
    _store(tmp_path / "c")
    head = tmp_path / "c" / "campaign.json"
    h = json.loads(head.read_text())
    h["config"]["seed"] = 999  # hand edit without updating the key
    head.write_text(json.dumps(h))
    with pytest.raises(FormatError, match="campaign_key does not match"):
        CampaignStore.open(tmp_path / "c")
    h.pop("spec")
    head.write_text(json.dumps(h))
    with pytest.raises(FormatError, match="missing fields"):
        CampaignStore.open(tmp_path / "c")


def test_refuses_a_different_campaign(tmp_path):
    _store(tmp_path / "c")
    with pytest.raises(ConfigError, match=r"seed: stored 3, requested 4.*new --out"):
        _store(tmp_path / "c", cfg=CampaignConfig(bers=[1e-5], trials=4, seed=4))
    with pytest.raises(ConfigError, match=r"groups: stored None, requested \['a'\]"):
        _store(tmp_path / "c", cfg=CampaignConfig(bers=[1e-5], trials=4, seed=3, groups=["a"]))
    with pytest.raises(ConfigError, match=r"spec.hit_prob: stored 0.01, requested 0.02"):
        _store(tmp_path / "c", spec=SyntheticSpec(n_images=100, hit_prob=0.02))
    with pytest.raises(ConfigError, match="model checksum.*the model changed"):
        _store(tmp_path / "c", spec=SyntheticSpec(n_images=100, model_tag="retrained"))


def test_not_a_store(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a campaign store.*new or empty"):
        _store(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        _store(tmp_path / "file")
    (tmp_path / "headless" / "records").mkdir(parents=True)
    with pytest.raises(FormatError, match="no campaign.json.*damaged"):
        _store(tmp_path / "headless")
    with pytest.raises(ConfigError, match="not a numharden campaign store"):
        CampaignStore.open(tmp_path / "nothing")
    # a crash before the header was linked leaves only a temporary file: still empty
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "campaign.json.tmp-host-1-ab").write_text("{")
    assert _store(tmp_path / "fresh").load().records == {}
