"""URL list parsing and the quality measures (sharpness, pose, perceptual hash)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from realface.data import SourceItem, UrlListError, estimate_pose, hamming, phash, read_url_list, sharpness
from realface.data.sources import write_url_list
from realface.face import AlignConfig, align_face, find_faces

SHA = "ab" * 32


def test_url_list_formats(tmp_path):
    (tmp_path / "a.txt").write_text(f"# renders\nhttps://x.org/1.png {SHA.upper()}\n\nhttp://y.org/2.jpg\n")
    assert read_url_list(tmp_path / "a.txt") == [
        SourceItem("https://x.org/1.png", SHA),
        SourceItem("http://y.org/2.jpg"),
    ]
    (tmp_path / "b.csv").write_text(f"URL,sha256,Licence,source\nhttps://x.org/1.png,{SHA},CC-BY 4.0,Daz\n")
    assert read_url_list(tmp_path / "b.csv") == [SourceItem("https://x.org/1.png", SHA, "CC-BY 4.0", "Daz")]
    entries = ["https://x.org/1.png", {"url": "https://x.org/2.png", "license": "CC0"}, "https://x.org/1.png"]
    (tmp_path / "c.json").write_text(json.dumps(entries))
    items = read_url_list(tmp_path / "c.json")
    assert [i.url for i in items] == ["https://x.org/1.png", "https://x.org/2.png"]  # repeat dropped
    assert items[1].license == "CC0"


def test_url_list_round_trip_with_landmarks(tmp_path):
    lms = [[float(i), float(2 * i)] for i in range(68)]
    entry = {
        "url": "https://x.org/a.jpg",
        "sha256": SHA,
        "license": "CC0",
        "source": "s",
        "faces": [{"landmarks_68": lms}],
    }
    for suffix in (".json", ".csv"):
        write_url_list([entry], tmp_path / f"l{suffix}")
        (item,) = read_url_list(tmp_path / f"l{suffix}")
        assert item.faces == (tuple(tuple(p) for p in lms),) and item.sha256 == SHA and item.license == "CC0"
    with pytest.raises(UrlListError, match=r"choose a \.json or \.csv"):
        write_url_list([entry], tmp_path / "l.txt")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "bad.txt",
            "https://x.org/a.png\nftp://x.org/b.png\n",
            r"bad\.txt line 2: 'ftp://x.org/b.png' is not an http",
        ),
        ("sha.txt", "https://x.org/a.png 1234\n", r"sha\.txt line 1: sha256 must be 64 hex digits"),
        (
            "nourl.csv",
            "link,licence\nhttps://x.org/a.png,CC0\n",
            r"nourl\.csv: the CSV header must name a 'url'",
        ),
        ("broken.json", '["https://x.org/a.png",', r"broken\.json: not valid JSON"),
        ("entry.json", '[{"licence": "CC0"}]', r"entry\.json entry 0: entry has no 'url'"),
        ("face.json", '[{"url": "https://x.org/a.png", "faces": [{"landmarks_68": [[1, 2]]}]}]', "68"),
        ("empty.txt", "# nothing\n", r"empty\.txt: no URL found"),
    ],
)
def test_url_list_errors_name_the_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(UrlListError, match=message):
        read_url_list(tmp_path / name)


def test_missing_url_list(tmp_path):
    with pytest.raises(UrlListError, match="URL list not found"):
        read_url_list(tmp_path / "none.csv")


@pytest.fixture(scope="module")
def render_face(fixture_files):
    rgb = np.asarray(Image.open(io.BytesIO(fixture_files["render.jpg"])).convert("RGB"))
    face = find_faces(rgb)[0]
    return rgb, face.landmarks_array


def test_sharpness_drops_with_blur_and_ignores_crop_size(render_face):
    rgb, lm = render_face
    crops = {s: align_face(rgb, lm, AlignConfig(output_size=s)).to_uint8() for s in (256, 512)}
    sharp = sharpness(crops[256])
    assert abs(sharpness(crops[512]) - sharp) < 0.2 * sharp  # one threshold for every --size
    blurred = np.asarray(Image.fromarray(crops[256]).filter(ImageFilter.GaussianBlur(2)))
    assert sharpness(blurred) < 0.3 * sharp
    with pytest.raises(ValueError, match="square"):
        sharpness(crops[256][:, :200])


def test_pose_estimate_follows_the_nose(render_face):
    _, lm = render_face
    base = estimate_pose(lm)
    assert abs(base.yaw) < 40 and abs(base.pitch) < 30  # a three-quarter view, not a profile
    half_width = (lm[16, 0] - lm[0, 0]) / 2
    turned = lm.copy()
    turned[30, 0] += half_width  # nose tip moved by half the face width: ~45° more yaw
    assert estimate_pose(turned).yaw - base.yaw > 30
    nodded = lm.copy()
    nodded[30, 1] += 0.3 * (lm[8, 1] - lm[36:48, 1].mean())  # tip moved towards the chin: head down
    assert estimate_pose(nodded).pitch - base.pitch > 30
    a = np.radians(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rolled = estimate_pose((lm - lm.mean(0)) @ rot.T + 100)  # in-plane rotation changes only the roll
    assert (rolled.yaw, rolled.pitch) == pytest.approx((base.yaw, base.pitch), abs=1e-6)
    assert rolled.roll - base.roll == pytest.approx(20, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        estimate_pose(lm[:60])


def test_phash_separates_duplicates_from_other_images(render_face, fixture_files):
    rgb, _ = render_face
    h = phash(rgb)
    assert hamming(h, h) == 0
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((320, 320)).save(buf, format="JPEG", quality=70)
    small = np.asarray(Image.open(buf).convert("RGB"))
    assert hamming(h, phash(small)) <= 6  # rescaled and re-encoded: a duplicate
    other = np.asarray(Image.open(io.BytesIO(fixture_files["astronaut.png"])).convert("RGB"))
    assert hamming(h, phash(other)) > 16
    assert hamming(h, phash(np.ascontiguousarray(rgb[:, ::-1]))) > 6  # a mirror image is not a copy
