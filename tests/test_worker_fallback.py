"""When the configured model cannot be loaded, `msearch embed` says so, names the handcrafted
fallback and embeds with it; metadata, full-text and MiniLM semantic search keep working, and
near-duplicates are found by the hashes the same run stored."""
from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from manuscripts_search.cli import cli
from manuscripts_search.embedding.registry import resolve_image_encoder
from manuscripts_search.embedding.encoders import EncoderLoadError
from manuscripts_search.embedding.handcrafted import HandcraftedEncoder
from tests.helpers.worker_catalogue import build_catalogue, load_corpus_image, migrated_factory

LABELS = {
    "print_hokusai_great-wave.jpg": "Katsushika Hokusai, The Great Wave off Kanagawa, woodblock print",
    "painting_munch_the-scream.jpg": "Edvard Munch, The Scream, expressionist painting",
    "ms_bnf_fr-844_20_music.jpg": "Chansonnier du Roi, folio 20, songs with musical notation",
    "ms_bnf_fr-24428_bestiary_129_miniature.jpg": "Bestiary, folio 129, miniature of animals",
}


def _run(env, *args, expect_ok=True):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if expect_ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture
def catalogue(msearch_env, tmp_path):
    from pathlib import Path

    factory = migrated_factory(msearch_env["MSEARCH_DB"])
    images = [(label, load_corpus_image(name, long_edge=256)) for name, label in LABELS.items()]
    wave = images[0][1]
    buffer = io.BytesIO()
    wave.resize((wave.width // 2, wave.height // 2)).save(buffer, "JPEG", quality=40)
    images.append(("The Great Wave, another museum's photograph", Image.open(io.BytesIO(buffer.getvalue()))))
    made = build_catalogue(factory, Path(msearch_env["MSEARCH_DATA_DIR"]), images, regions_per_canvas=2)
    yield made
    factory.kw["bind"].dispose()


def test_missing_model_falls_back_to_handcrafted_and_text_search_still_works(msearch_env, catalogue, tmp_path):
    env = {**msearch_env, "MSEARCH_MODEL": str(tmp_path / "no-such-model")}

    refused = _run(env, "embed", "--no-fallback", "--json", expect_ok=False)
    assert refused.exit_code != 0 and "cannot load model" in refused.output and "no-such-model" in refused.output

    result = _run(env, "embed", "--json")
    assert "warning: cannot use the configured model" in result.stderr and "no-such-model" in result.stderr
    assert "Falling back to the handcrafted colour/texture features" in result.stderr
    report = json.loads(result.stdout)
    assert report["encoder"] == "handcrafted" and "does not exist" in report["fallback_reason"]
    assert report["space"] == HandcraftedEncoder().space_id
    assert report["embedded"] == catalogue.items == 15 and report["hashed"] == 15
    assert report["index"]["total"] == 15

    # Text search needs no image model: the search engineer's `index` builds full-text documents
    # and MiniLM sentence vectors (the real packaged weights), and queries find the labels.
    _run(env, "index", "--json")
    wave_id = catalogue.canvas_ids[0]
    hits = [json.loads(line) for line in _run(env, "search", "Hokusai woodblock", "--json").stdout.splitlines()]
    assert hits and hits[0]["canvas_id"] == wave_id
    semantic = [json.loads(line) for line in _run(env, "search", "tunes and melodies for singing", "--signal",
                                                  "semantic", "--json").stdout.splitlines()]
    assert semantic and semantic[0]["canvas_id"] == catalogue.canvas_ids[2]  # the chansonnier, by meaning

    # The same run hashed the images: the other photograph of the wave is a near-duplicate.
    duplicates = [json.loads(line) for line in
                  _run(env, "search", "--duplicates-of", str(wave_id), "--json").stdout.splitlines()]
    assert [hit["canvas_id"] for hit in duplicates] == [catalogue.canvas_ids[4]]

    # Searching by image falls back the same way: a photo of the scream finds the scream's canvas
    # in the handcrafted space, and a text query with the visual signal forced says why it cannot.
    photo = tmp_path / "scream-photo.jpg"
    load_corpus_image("painting_munch_the-scream.jpg", long_edge=200).save(photo, "JPEG", quality=70)
    searched = _run(env, "search", "--image", str(photo), "--k", "3", "--json")
    assert "Falling back to the handcrafted colour/texture features" in searched.stderr
    by_image = [json.loads(line) for line in searched.stdout.splitlines()]
    assert by_image[0]["canvas_id"] == catalogue.canvas_ids[1]
    forced = _run(env, "search", "a scream", "--signal", "visual", expect_ok=False)
    assert forced.exit_code == 1 and "no search signal can answer this query" in forced.output

    again = json.loads(_run(env, "embed", "--json").stdout)
    assert (again["embedded"], again["hashed"]) == (0, 0)


def test_handcrafted_can_be_chosen_by_name_and_the_reason_is_kept(tmp_path):
    chosen = resolve_image_encoder("handcrafted")
    assert chosen.kind == "handcrafted" and not chosen.is_fallback
    assert chosen.describe() == f"using handcrafted encoder {HandcraftedEncoder().space_id}"
    fallen = resolve_image_encoder(str(tmp_path / "gone"))
    assert fallen.is_fallback and "does not exist" in fallen.fallback_reason
    assert "text queries use metadata and transcriptions only" in fallen.describe()
    with pytest.raises(EncoderLoadError, match="does not exist"):
        resolve_image_encoder(str(tmp_path / "gone"), fallback=False)
