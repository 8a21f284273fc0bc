"""The one set of cases for shared/text.py's rules, run against Python
(tests/unit/test_text.py) and the database (tests/integration/test_text_rules.py).

SHOWN: (text, may others be shown it). SAME_CALLSIGN: (a, b, are they the
same callsign). Only characters whose normalisation every Unicode version
from 14 on agrees about, so the cases hold on any PostgreSQL 15-18 and any
Python 3.11+.
"""

from __future__ import annotations

SHOWN: list[tuple[str, bool]] = [
    ("Ace", True),
    ("Ace Ventura-2 ✈", True),
    ("Стрелок", True),
    ("名前", True),
    ("Ñandú", True),
    ("x", True),
    ("  Ace  ", True),           # surrounding spaces are not the rule's business
    ("Ace\u00a0Medic", True),    # whitespace between words is fine
    ("Ace\u3164", True),         # a filler beside something visible
    ("🚀 Rocket", True),
    ("e\u0301", True),           # a combining mark is not a format character
    # control characters (Cc)
    ("Ace\nMedic needs help", False),
    ("Ace\r", False),
    ("Ace\t", False),
    ("Ace\x7f", False),
    ("Ace\x1b[31m", False),
    ("Ace\x85", False),
    ("\x01", False),
    # format characters (Cf)
    ("Ace\u202eeciv", False),    # right-to-left override
    ("\u202dAce", False),        # left-to-right override
    ("Ace\u2066x\u2069", False), # isolates
    ("A\u200bce", False),        # zero-width space
    ("A\u200dce", False),        # zero-width joiner
    ("A\u200ece", False),        # left-to-right mark
    ("A\u061cce", False),        # Arabic letter mark
    ("\ufeffAce", False),        # byte order mark / zero-width no-break space
    ("Ace\u00ad", False),        # soft hyphen
    ("Ace\u2060", False),        # word joiner
    ("Ace\U000e0041", False),    # tag character
    ("Ace\U0001d173", False),    # musical symbol begin beam
    # line and paragraph separators (Zl, Zp)
    ("Ace\u2028Medic", False),
    ("Ace\u2029", False),
    # nothing but whitespace, of any kind
    ("   ", False),
    ("\u00a0", False),
    ("\u3000\u3000", False),
    ("\u2002\u2003\u2009", False),
    ("\u205f\u202f\u1680", False),
    ("\u3164", False),           # Hangul filler
    ("\u2800\u115f", False),     # blank braille pattern, Hangul choseong filler
    ("\u00a0\ufeff", False),
    # default-ignorables that are not format characters: allowed beside
    # something visible (emoji presentation, variation sequences), never alone
    ("❤\ufe0f", True),          # variation selector 16
    ("Ace\u034f", True),         # combining grapheme joiner
    ("葛\U000e0100", True),      # ideographic variation selector 17
    ("\u034f", False),
    ("\ufe0f", False),
    ("\ufe0e\ufe0f", False),
    ("\U000e0100", False),
    ("\u180b \u17b4", False),    # Mongolian free variation selector, Khmer inherent vowel
    ("\u3164\u034f", False),
]

SAME_CALLSIGN: list[tuple[str, str, bool]] = [
    ("Ace", "ace", True),
    ("Ace", "ACE", True),
    ("Ace", "Ａｃｅ", True),             # fullwidth (NFKC)
    ("ace", "\u1d2c\u1d9c\u1d49", True),   # modifier letters (NFKC)
    ("Ñandú", "N\u0303andu\u0301", True),  # composed vs decomposed
    ("ÑANDÚ", "ñandú", True),
    ("Àce", "àCE", True),
    ("Straße", "STRAẞE", True),          # capital sharp s folds to ß
    ("Strasse", "Straße", False),        # simple folding keeps ß
    ("ΟΔΥΣΣΕΥΣ", "οδυσσευς", True),
    ("ΟΔΥΣΣΕΥΣ", "οδυσσευς".replace("ς", "σ"), True),
    ("οδυσσευς", "οδυσσευσ", True),        # final sigma
    ("Стрелок", "СТРЕЛОК", True),
    ("Ǆ", "ǆ", True),                    # titlecase digraphs
    ("ǅ", "Ǆ", True),
    ("ﬁre", "FIRE", True),               # ligature (NFKC)
    ("Ⅻ", "xii", True),                  # roman numeral (NFKC) then folding
    ("K", "\u212a", True),               # Kelvin sign
    ("Å", "\u212b", True),               # Angstrom sign
    ("Ace", "Ace\u034f", True),         # default-ignorables draw as nothing
    ("Ace", "A\u034fce", True),
    ("Ace", "Ace\ufe0f", True),
    ("Ace", "Ace\ufe0e", True),
    ("Ace", "Ace\U000e0100", True),
    ("Ace", "Ace\u180b", True),
    ("Ace", "Ace\u3164", True),         # Hangul filler
    ("Ace", "Ace\uffa0", True),         # halfwidth Hangul filler
    ("Ace", "Ace\u17b5", True),
    ("❤", "❤\ufe0f", True),
    ("Ace", "Ace\u200d", True),         # format default-ignorables too: an old callsign
    ("Ace", "\u202eAce", True),         # may carry them (refused in new text)
    ("Ace", "A\u00adce\U000e0041", True),
    ("Ace", "Ace\u0600", False),        # a format character that shows is kept
    ("Ace", "Ace ", True),              # White_Space is trimmed (issue 24)
    ("Ace", "\u3000Ace\u1680", True),
    ("Ace", "Ace\u2800", True),         # the blank braille pattern draws as nothing
    ("A ce", "A   ce", True),           # and collapsed
    ("A ce", "Ace", False),
    ("Ace", "Ac3", False),
    ("Ace", "Асе", False),               # Cyrillic look-alikes are other letters
    ("İstanbul", "istanbul", False),     # dotted capital I has no simple folding
    ("ꭰ", "Ꭰ", True),                    # Cherokee folds to upper case
    ("Ꮿ", "ꮿ", True),
    ("𐐀", "𐐨", True),                    # Deseret, beyond the BMP
]

# (held, wanted, verdict): may a member take `wanted` while another holds
# `held`? "same": the same callsign (equal callsign_key; the database answers
# unique_violation, PostgREST 409); "lookalike": passes for it (equal
# callsign_skeleton_key, UTS #39 confusables; check violation
# profiles_callsign_lookalike, PostgREST 400); None: it may.
CALLSIGN_CLASHES: list[tuple[str, str, str | None]] = [
    ("Bill", "BILL", "same"),
    ("Bill", "BiII", "lookalike"),        # capital I for l
    ("Bill", "Bi11", "lookalike"),        # digit one for l
    ("Boss", "Воss", "lookalike"),        # Cyrillic В and о
    ("Ace", "Асе", "lookalike"),          # all Cyrillic
    ("Boss", "Boss ", "same"),            # White_Space trimmed...
    ("Boss", " Boss", "same"),
    ("Boss", "Boss\u1680", "same"),       # ...of any kind
    ("Boss", "\u3000Boss", "same"),
    ("Boss", "Boss\u2800", "same"),       # the blank braille pattern draws as nothing
    ("Boss", "Bo\u2800ss", "same"),
    ("Boss", "Boss\u3164", "same"),       # Hangul fillers too
    ("Boss", "Boss\uffa0", "same"),
    ("Boss", "Boss\u115f", "same"),
    ("Bo ss", "Bo  ss", "same"),          # ...and collapsed
    ("Bo ss", "Bo\u00a0ss", "same"),
    ("Bo ss", "Bo \u2800 ss", "same"),
    ("Tom", "Torn", "lookalike"),         # rn for m
    ("Boss", "Bo ss", None),
    ("BILL", "BiII", None),               # B-I-L-L and B-i-I-I do not look alike
    ("Bill", "Bil", None),
    ("Ace", "Ace 名前", None),
    ("Стрелок", "Стрелок 2", None),
]

# (new callsign, mixes scripts in a confusable way): refused as
# profiles_callsign_mixed_scripts even when nobody holds a look-alike.
MIXED_SCRIPTS: list[tuple[str, bool]] = [
    ("Воss", True),            # Cyrillic В, о beside Latin s: passes for Latin
    ("abсd", True),            # one Cyrillic с
    ("Ѕсоtt", True),
    ("ΑBC", True),             # Greek Alpha
    ("Ꭰace", True),            # Cherokee A
    ("Boss", False),
    ("Bi11", False),           # digits are Common: Latin alone
    ("Стрелок", False),
    ("ΑΒΓ", False),
    ("名前", False),
    ("Ace 名前", False),        # mixed, but passes for no single script
    ("Ace Стрелок", False),
    ("Ωmega", False),
    ("🚀 Rocket", False),
    ("Ñandú", False),
    ("Ace Ventura-2 ✈", False),
]
