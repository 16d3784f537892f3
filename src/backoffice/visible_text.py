"""Text people read: it shows at least one character, and shows what it is.

Names, titles, notes and key names are shown to other people (an admin's user list, an
order's note, a list of keys), so text made only of characters that show nothing (a
zero-width space, a lone combining mark, tag characters) is refused, and so are the
bidirectional controls that make text read otherwise than it is stored ("Trojan Source",
CVE-2021-42574). `backoffice.schemas` applies both rules to every text field and states
them in the JSON schema's `pattern`, built from the tables here, so the document and the
code cannot drift apart. Invisible characters inside text that shows something stay: a
zero-width joiner inside an emoji sequence, tag characters in a flag, a variation
selector.
"""

from __future__ import annotations

import re
import unicodedata

#: Inclusive code point ranges.
Ranges = tuple[tuple[int, int], ...]

#: Unicode's White_Space: what `trimmed` (pydantic's `strip_whitespace`) removes.
WHITE_SPACE: Ranges = (
    (0x0009, 0x000D),
    (0x0020, 0x0020),
    (0x0085, 0x0085),
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)

#: Characters that show nothing, alone or anywhere: white space, controls, Unicode's
#: Default_Ignorable_Code_Point (soft hyphen, zero-width space and joiners, direction
#: marks, word joiner, invisible operators, variation selectors, Hangul fillers, tag
#: characters), the other invisible format characters (interlinear annotation, Egyptian
#: hieroglyph format controls) and the blank braille pattern. The prepended concatenation
#: marks (U+0600-U+0605, U+06DD, ...), format characters with a glyph, are not here.
INVISIBLE: Ranges = (
    (0x0000, 0x0020),
    (0x007F, 0x00A0),
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x1680, 0x1680),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x206F),
    (0x2800, 0x2800),
    (0x3000, 0x3000),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFFB),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

#: Bidirectional embedding, override and isolate controls (LRE, RLE, PDF, LRO, RLO and
#: LRI, RLI, FSI, PDI): they reorder how the text around them is shown, so a name can read
#: differently from what it is. Refused anywhere. The marks U+200E, U+200F and U+061C
#: (LRM, RLM, ALM) stay allowed, though they show nothing: they only settle the direction
#: of the neutral characters beside them, which right-to-left text with digits or
#: punctuation needs, and reorder no run of text.
BIDI_CONTROLS: Ranges = ((0x202A, 0x202E), (0x2066, 0x2069))

BIDI_MESSAGE = (
    "must not contain bidirectional embedding, override or isolate controls "
    "(U+202A-U+202E, U+2066-U+2069)"
)
INVISIBLE_MESSAGE = (
    "must contain a visible character, not only white space, invisible or combining characters"
)


def _escaped(code: int) -> str:
    # Astral characters as themselves: `\uXXXX` reaches only the BMP, and the spellings
    # beyond it differ between regex flavours (JSON Schema's is ECMA-262's).
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


def char_class(ranges: Ranges) -> str:
    """The inside of a regex character class holding `ranges` (`\\u0000-\\u0020...`)."""
    return "".join(
        _escaped(low) if low == high else f"{_escaped(low)}-{_escaped(high)}"
        for low, high in ranges
    )


_NOT_INVISIBLE = re.compile(f"[^{char_class(INVISIBLE)}]")
_BIDI_CONTROL = re.compile(f"[{char_class(BIDI_CONTROLS)}]")


def has_visible(text: str) -> bool:
    """Whether `text` shows something: a character neither invisible nor a combining mark
    (a mark, category M, shows only on a character before it)."""
    return any(
        not unicodedata.category(found.group()).startswith("M")
        for found in _NOT_INVISIBLE.finditer(text)
    )


def has_bidi_control(text: str) -> bool:
    return _BIDI_CONTROL.search(text) is not None
