"""The names the widgets show: a provider's label and a job's kind badge."""

from __future__ import annotations

from jupyter_imagine.widgets._labels import kind_label, provider_label


def test_a_provider_shows_its_label_and_an_unknown_one_its_name():
    assert provider_label("apiframe") == "APIFRAME"
    assert provider_label("no-such-provider") == "no-such-provider"


def test_the_kind_badge_says_the_kind_once():
    assert kind_label("", "imagine") == "imagine"
    assert kind_label("U2", "upscale") == "U2 · upscale"
    assert kind_label("Vary (Region)", "vary_region") == "Vary (Region)"
    assert kind_label("🔄", "reroll") == "Reroll"
    assert kind_label("⬅️", "pan") == "Pan left"
    assert kind_label("Vary (Strong)", "variation") == "Vary (Strong) · variation"
