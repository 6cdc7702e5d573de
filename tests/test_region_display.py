"""Which regions of a hit are shown (search/region_display.py): the best one and at most two that
do not overlap it, on real overlapping boxes: the multi-scale grid windows the harvester embeds,
nested windows around one detail, annotation lines."""
from __future__ import annotations

from harvest.regions import RegionGrid
from manuscripts_search.search.region_display import MAX_COVER, MAX_IOU, overlap, parse_box, pick_regions
from manuscripts_search.search.signals import RegionMatch

CANVAS = (1000, 1500)


def _xywh(box) -> str:
    return ",".join(str(v) for v in box)


def _pairwise_clear(shown) -> bool:
    boxes = [parse_box(region.xywh) for region in shown]
    return all(iou < MAX_IOU and cover < MAX_COVER
               for i, a in enumerate(boxes) for b in boxes[i + 1:] for iou, cover in [overlap(a, b)])


def test_grid_windows_around_one_detail_come_down_to_the_best_and_two_apart():
    # Score every window of the default 2,3 grid by how much of a detail (a miniature in the
    # lower right) it holds, as a k-NN would: the windows around it all score, nested and
    # overlapping; a second, weaker detail sits top left.
    detail, second = (600, 950, 300, 400), (80, 90, 250, 300)
    windows = RegionGrid((2, 3)).boxes(*CANVAS)
    assert len(windows) == 13

    def score(box):
        return max(overlap(box, detail)[0], 0.6 * overlap(box, second)[0])

    regions = sorted((RegionMatch(_xywh(box), score(box), "visual") for box in windows if score(box) > 0),
                     key=lambda region: -region.score)
    assert len(regions) >= 8  # the cloud the thumbnails drew
    shown = pick_regions(regions)
    assert 1 <= len(shown) <= 3
    assert shown[0].xywh == regions[0].xywh and shown[0].rank == 1
    assert [region.rank for region in shown] == list(range(1, len(shown) + 1))
    assert _pairwise_clear(shown)
    # The weaker detail's best window is among them; nothing inside the first pick is.
    assert any(overlap(parse_box(region.xywh), second)[1] > 0.5 for region in shown[1:])
    # Every window left out overlaps a shown one (that is why it was left out).
    kept = {region.xywh for region in shown}
    for region in regions[:regions.index(next(r for r in regions if r.xywh == shown[-1].xywh))]:
        if region.xywh not in kept:
            box = parse_box(region.xywh)
            assert any(iou >= MAX_IOU or cover >= MAX_COVER
                       for iou, cover in (overlap(box, parse_box(k)) for k in kept))


def test_a_window_nested_in_a_kept_one_is_dropped_though_its_iou_is_small():
    big = RegionMatch("0,0,1000,1500", 0.40, "visual")  # the whole-page-sized window
    inside = RegionMatch("600,900,200,200", 0.35, "visual")  # IoU 0.027, all of it inside
    contains = RegionMatch("550,850,400,500", 0.34, "visual")
    assert overlap(parse_box(inside.xywh), parse_box(big.xywh))[0] < MAX_IOU
    shown = pick_regions([big, inside, contains])
    assert [region.xywh for region in shown] == ["0,0,1000,1500"]
    # The other way round: the small box first, the big one around it is dropped as well.
    shown = pick_regions([inside, big, RegionMatch("0,1300,300,200", 0.2, "visual")])
    assert [region.xywh for region in shown] == ["600,900,200,200", "0,1300,300,200"]


def test_never_more_than_three_and_the_hits_best_region_goes_first():
    apart = [RegionMatch(f"{x},0,100,100", 0.9 - x / 10_000, "visual") for x in range(0, 1000, 150)]
    assert len(pick_regions(apart)) == 3
    assert len(pick_regions(apart, limit=1)) == 1
    # The engine's best visual region leads even where a text box scored higher on its own scale.
    text = RegionMatch("100,100,800,60", 7.5, "fulltext", "Here begins the book of the red dragon")
    picture = RegionMatch("500,750,500,750", 0.31, "visual")
    shown = pick_regions([text, picture], best_xywh="500,750,500,750")
    assert [(region.xywh, region.rank) for region in shown] == [("500,750,500,750", 1), ("100,100,800,60", 2)]


def test_labels_say_what_matched_with_rank_and_score():
    line = RegionMatch("100,100,800,60", 2.5, "fulltext", "  Here begins\nthe book of the red dragon  ")
    long_line = RegionMatch("100,300,800,60", 1.5, "semantic", "a " * 80)
    shown = pick_regions([RegionMatch("500,750,500,750", 0.312, "visual"), line, long_line])
    assert [region.label for region in shown[:2]] == ["picture", "Here begins the book of the red dragon"]
    assert len(shown[2].label) <= 60 and shown[2].label.endswith("…")
    assert shown[0].caption == "1 · picture · 0.312"
    assert shown[1].as_dict() == {"xywh": "100,100,800,60", "rank": 2, "signal": "fulltext", "score": 2.5,
                                  "label": "Here begins the book of the red dragon",
                                  "caption": "2 · Here begins the book of the red dragon · 2.500"}
    # An annotation without words to show is labelled as the picture it outlines.
    assert pick_regions([RegionMatch("0,0,10,10", 1.0, "fulltext", " ")])[0].label == "picture"


def test_unreadable_boxes_are_passed_over():
    bad = [RegionMatch(text, 0.9, "visual") for text in ("", "1,2,3", "a,b,c,d", "0,0,0,10", "0,0,10,-5", "1,2,3,4,5")]
    good = RegionMatch("10,10,50,50", 0.1, "visual")
    assert [region.xywh for region in pick_regions([*bad, good], best_xywh="1,2,3")] == ["10,10,50,50"]
    assert pick_regions([]) == []
