"""Where a key sits in a batch file, so a validation error can name its line."""

from __future__ import annotations

import re


def line_of(text: str, loc: tuple) -> int:
    """Line (1-based) of a key: ``(key,)``, ``(section, key)`` or ``("analysis", i, key)``; best effort."""
    section, index, key = None, None, loc[-1]
    if len(loc) == 2:
        section = loc[0]
    elif len(loc) >= 3:
        section, index, key = loc[0], loc[1], loc[2]
    current, count, header_line = None, -1, 1
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if m := re.match(r"^\[\[\s*([\w.-]+)\s*\]\]", s):
            current = m.group(1)
            count = count + 1 if current == section else count
            if current == section and count == index:
                header_line = n
            continue
        if m := re.match(r"^\[\s*([\w.-]+)\s*\]", s):
            current = m.group(1)
            if current == section and index is None:
                header_line = n
            continue
        in_scope = current == section and (index is None or count == index)
        if in_scope and re.match(rf"^{re.escape(str(key))}\s*=", s):
            return n
    return header_line
