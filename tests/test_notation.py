"""The notation reader on real DSGS lexicon strings (the bundled engine's notation/sgg.json, packed
from PyPI signwriting 0.1.19), SiGML, and lexicon files with malformed entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines.notation.description import HandSite, Motion
from engines.notation.lexicon import base_gloss, load_lexicon
from engines.notation.reader import read_hamnosys, read_sigml
from engines.notation.symbols import NotationError, UnknownSymbol, names_of, to_hamnosys

LEXICON = Path(__file__).resolve().parent.parent / "engines" / "default" / "notation" / "sgg.json"
_ROWS = json.loads(LEXICON.read_text(encoding="utf-8"))


def ham(gloss: str) -> str:
    """The first HamNoSys string the lexicon writes for `gloss`."""
    return next(r["hamnosys"] for r in _ROWS if r["gloss"] == gloss)


def walk(m: Motion):
    yield m
    for c in m.children + (m.nondominant or ()) + m.shift:
        yield from walk(c)


def motions(gloss: str) -> list[Motion]:
    return [m for p in read_hamnosys(ham(gloss)).parts for m in walk(p.motion)]


def test_symbol_table_is_the_hamnosys_package_names():
    assert names_of("\ue000\ue001\ue0e9") == ["hamfist", "hamflathand", "hamsymmlr"]
    assert to_hamnosys(["hamfist", "hamflathand"]) == "\ue000\ue001"
    with pytest.raises(UnknownSymbol) as err:
        names_of("\ue000\uf8ff")
    assert err.value.code == "notation_unknown_symbol" and err.value.symbol == "U+F8FF"


def test_one_hand_handshape_orientation_location_and_straight_movement():
    sign = read_hamnosys(ham("KIND"))  # flathand thumbout extfingero palmd chest lrat moved smallmod
    assert sign.renderable and not sign.two_handed and len(sign.parts) == 1
    part = sign.parts[0]
    assert part.dominant.shape.base == "flathand" and part.dominant.shape.thumb == "out"
    assert part.dominant.ext == ("o",) and part.dominant.palm == ("d",)
    assert part.location.site == "chest" and part.location.side == "at"
    (move,) = part.motion.children
    assert move.kind == "move" and move.direction == ("d",) and move.size == "small"


def test_symmetry_lr_and_repetition():
    part = read_hamnosys(ham("HEUTE")).parts[0]  # symmlr finger2345 … moved smallmod repeatfromstart
    assert part.symmetry == "lr" and part.two_handed
    (rep,) = part.motion.children
    assert rep.kind == "repeat" and rep.repeat == "fromstart" and rep.children[0].direction == ("d",)


def test_symmetry_par_and_per_hand_palms_in_a_group():
    part = read_hamnosys(ham("ÜBERSETZEN")).parts[0]
    assert part.symmetry == "par"
    assert part.dominant.palm == ("d",) and part.nondominant.palm == ("u",)
    assert part.dominant.shape == part.nondominant.shape  # written once, before the group
    replace = next(m for m in motions("ÜBERSETZEN") if m.kind == "replace")
    assert replace.posture.palm == ("u",) and replace.nd_posture.palm == ("d",)
    assert any(m.kind == "move" and m.arc == "u" for m in motions("ÜBERSETZEN"))


def test_two_hands_with_own_postures_and_hand_contact():
    part = read_hamnosys(ham("JAHR")).parts[0]
    assert part.symmetry == "" and part.two_handed
    assert part.dominant.ext == ("l",) and part.nondominant.ext == ("r",)
    assert part.location.hand == HandSite("thumbside") and part.location.other_hand == HandSite("pinkyside")
    assert part.location.hands_contact == "touch"  # the contact after the hand parts: between the hands


def test_handshape_modifiers_bending_single_fingers_and_added_fingers():
    regen = read_hamnosys(ham("REGEN")).parts[0].dominant.shape
    assert (regen.base, regen.bend, regen.thumb) == ("finger2345", "bend", "out")
    wolli = read_hamnosys(ham("WOLLISHOFEN")).parts[0].dominant.shape
    assert wolli.finger_bends == (("pinky", "hook"),) and wolli.thumb == "across"
    kuh = read_hamnosys(ham("KUH_1")).parts[0].dominant.shape
    assert kuh.base == "finger2" and kuh.extra_fingers == ("pinky",)
    flug = read_hamnosys(ham("FLUGZEUG")).parts[0].dominant
    assert flug.shape.between is not None and flug.shape.between.bend == "straight"


def test_two_directions_in_a_row_and_between_sites():
    haus = read_hamnosys(ham("HAUS")).parts[0]
    assert haus.dominant.ext == ("uo", "ol")
    # A contact before the site of a two-handed sign is between the hands (the roof's fingertips),
    # one after the site is with the body.
    assert haus.location.hands_contact == "touch" and haus.location.contact == ""
    ausdruck = read_hamnosys(ham("AUSDRUCK")).parts[0]  # symmlr … touch chest close
    assert (ausdruck.location.hands_contact, ausdruck.location.site, ausdruck.location.contact) == (
        "touch", "chest", "close")
    so = read_hamnosys(ham("SO_B")).parts[0]
    assert so.location.site == "head" and so.location.between.site == "shouldertop"


def test_movement_kinds_and_modifiers():
    assert any(m.kind == "circle" and m.direction == ("u",) and m.size == "small" for m in motions("FAMILIE"))
    assert any(m.kind == "move" and m.path == "zigzag" for m in motions("FARBSTIFT"))
    assert any(m.kind == "move" and m.path == "wavy" for m in motions("HAUSFRAU"))
    assert any(m.kind == "swing" for m in motions("VERB"))
    assert any(m.kind == "twist" for m in motions("WELLIG"))
    assert any(m.kind == "nod" for m in motions("VORTRAG"))
    assert any(m.kind == "fingerplay" for m in motions("MILLIARDE"))
    assert any(m.kind == "stir" for m in motions("AUSREDE"))
    assert any(m.kind == "move" and m.speed == "slow" for m in motions("MONDAUFGANG"))
    assert any(m.kind == "repeat" and m.repeat == "reverse" for m in motions("MALEN_B"))
    haus = motions("HAUS")  # fusion(par(mover replace …) moved)
    assert any(m.kind == "replace" and m.posture.palm == ("l",) for m in haus)


def test_a_movement_ending_at_a_location_and_compound_parts():
    wasser = read_hamnosys(ham("HAUSFRAU"))
    place = [m for m in walk(wasser.parts[0].motion) if m.target is not None]
    assert place and place[-1].target.site == "earlobe" and place[-1].target.contact == "touch"
    helm = read_hamnosys(ham("HELM"))
    assert len(helm.parts) == 2 and all(p.symmetry == "lr" for p in helm.parts)


def test_an_unrendered_symbol_is_named_with_a_stable_code():
    sign = read_hamnosys(to_hamnosys(["hamflathand", "hamextfingero", "hamorirelative", "hampalmd", "hamchest"]))
    assert not sign.renderable
    assert [(u.symbol, u.code) for u in sign.unsupported] == [("hamorirelative", "notation_unsupported")]


def test_malformed_notation_is_a_coded_error_naming_the_symbol():
    with pytest.raises(NotationError) as err:
        read_hamnosys(ham("NICHT"))  # a real entry with a stray hamseqend
    assert err.value.code == "notation_syntax" and err.value.symbol == "hamseqend"
    with pytest.raises(NotationError) as err:
        read_hamnosys(to_hamnosys(["hamflathand", "hamparbegin", "hamextfingero"]))
    assert err.value.symbol == "hamparbegin"


def test_sigml_reads_as_its_hamnosys():
    from hamnosys.converter import HamToSigml

    xml = HamToSigml().convert(ham("REGEN"), gloss="REGEN")  # the hamnosys package's own SiGML
    ((gloss, sign),) = read_sigml(xml)
    assert gloss == "REGEN" and sign == read_hamnosys(ham("REGEN"))


def test_variant_suffixes():
    assert [base_gloss(g) for g in ("HAUS", "ZEIT_B", "GUTEN_MORGEN_1", "VIEL_A_2", "ÄTHIOPIEN_INT")] == [
        "HAUS", "ZEIT", "GUTEN_MORGEN", "VIEL", "ÄTHIOPIEN"]


@pytest.mark.parametrize("fmt", ["csv", "json", "sigml"])
def test_a_malformed_entry_is_reported_by_name_and_the_good_ones_load(tmp_path, fmt):
    good = [("HAUS", ham("HAUS")), ("KIND", ham("KIND"))]
    bad = ("KAPUTT", to_hamnosys(["hamflathand", "hamseqend"]))
    rows = [good[0], bad, good[1]]
    path = tmp_path / f"mine.{fmt}"
    if fmt == "csv":
        path.write_text("gloss,hamnosys\n" + "".join(f"{g},{h}\n" for g, h in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps([{"gloss": g, "hamnosys": h} for g, h in rows]), encoding="utf-8")
    else:
        from hamnosys.converter import HamToSigml

        signs = []
        for g, h in rows:
            names = names_of(h)
            signs.append(f'<hns_sign gloss="{g}"><hamnosys_manual>' + "".join(f"<{n}/>" for n in names)
                         + "</hamnosys_manual></hns_sign>")
        assert HamToSigml  # the same element names the package writes
        path.write_text("<sigml>" + "".join(signs) + "</sigml>", encoding="utf-8")
    lex = load_lexicon(path, "sgg")
    assert [e.gloss for e in lex.entries] == ["HAUS", "KIND"]
    (err,) = lex.errors
    assert err.gloss == "KAPUTT" and err.code == "notation_syntax" and "hamseqend" in err.message
    assert str(path) in err.where


def test_lexicon_check_command(tmp_path):
    from typer.testing import CliRunner

    from server.cli import app

    path = tmp_path / "mine.csv"
    rows = [("HAUS", ham("HAUS")), ("SCHWEIZ_X", ham("SCHWEIZ_4")), ("KAPUTT", "\ue001\ue0e1")]
    path.write_text("gloss,hamnosys\n" + "".join(f"{g},{h}\n" for g, h in rows), encoding="utf-8")
    got = CliRunner().invoke(app, ["lexicon", "check", str(path)])
    assert got.exit_code == 1  # an entry could not be read
    summary = json.loads(got.stdout.strip().splitlines()[-1])
    assert summary["entries"] == 3 and summary["parsed"] == 2 and summary["errors"] == 1
    assert "HAUS\tok" in got.stdout


def test_gestural_sigml_is_refused_by_name():
    xml = ('<sigml><hamgestural_sign gloss="HAUS"><sign_manual><handconfig handshape="flat"/></sign_manual>'
           '</hamgestural_sign></sigml>')
    with pytest.raises(NotationError) as err:
        read_sigml(xml)
    assert err.value.code == "notation_syntax" and err.value.symbol == "sign_manual" and "gestural" in err.value.message


def test_between_two_parts_of_the_hand_is_one_point_of_the_dominant_hand():
    # VATER: finger2 thumbout extfingerul palml chin seq(close thumbside between indexfinger fingerside)
    # movei small touch repeat. "hambetween" joins two parts of the same hand: it is no second
    # site, and no part of another hand (the sign stays one-handed).
    sign = read_hamnosys(ham("VATER"))
    assert sign.renderable and not sign.two_handed
    loc = sign.parts[0].location
    assert (loc.site, loc.contact, loc.other_hand, loc.between) == ("chin", "close", None, None)
    assert loc.hand == HandSite("thumbside", between=HandSite("fingerside", "indexfinger"))
    # SCHNUPPERN: nostrils seq(touch indexfinger fingerpad between fingermidjoint handback)
    second = next(r["hamnosys"] for r in _ROWS if r["gloss"] == "SCHNUPPERN" and "hambetween" in names_of(r["hamnosys"]))
    loc = read_hamnosys(second).parts[0].location
    assert loc.other_hand is None and loc.hand.between == HandSite("fingermidjoint", side="handback")
    # hambetween with no hand part after it is not guessed at
    bad = read_hamnosys(to_hamnosys(["hamfinger2", "hamextfingeru", "hampalml", "hamchin", "hamthumbside",
                                     "hambetween"]))
    assert ("hambetween", "notation_unsupported") in [(u.symbol, u.code) for u in bad.unsupported]


def test_fsw_hands_rule_hands_drawn_without_any_movement_are_two_hands():
    from bench.notation import fsw_hands, fsw_two_handed

    # HÜTEN: two right-hand symbols one above the other with a contact star, no movement: the
    # hands are held together (its HamNoSys is two-handed). Neither rotation nor side-by-side
    # placement says so; the no-movement clause does.
    huten = "M522x525S10e20478x474S20356478x510S20600500x493"
    hands = fsw_hands(huten)
    assert [h[1] for h in hands] == ["right", "right"] and abs(hands[0][2] - hands[1][2]) < 15
    assert fsw_two_handed(hands, huten)
    # FINDEN: one hand drawn twice, start and end, with a movement arrow between: one hand.
    finden = "M517x540S1ce20495x459S1d152483x511S22a00496x493"
    assert not fsw_two_handed(fsw_hands(finden), finden)
    # A right and a left hand (rotation 8-f) are two hands whatever else is drawn.
    assert fsw_two_handed(fsw_hands("M519x522S14c51480x478S20348481x507S21100506x506"))
