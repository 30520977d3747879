"""The keepalived.conf reader: comments, quotes, blocks, includes, and file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.keepalived.parser import (
    KeepalivedParseError,
    Statement,
    parse_file,
    parse_text,
    split_line,
)


def words(line: str) -> list[str]:
    return [t.text for t in split_line(line, "f", 1)]


def test_comments_start_anywhere_with_hash_or_bang() -> None:
    assert words("priority 100 # the master") == ["priority", "100"]
    assert words("priority 100 ! the master") == ["priority", "100"]
    assert words("! whole line") == []
    assert words("   # indented comment") == []


def test_quotes_group_words_and_hide_comment_characters() -> None:
    assert words('script "/usr/bin/pgrep -x haproxy"  # check') == [
        "script",
        "/usr/bin/pgrep -x haproxy",
    ]
    assert words("auth_pass 'a#b!c'") == ["auth_pass", "a#b!c"]
    assert words('x ab"cd ef"gh') == ["x", "abcd efgh"]


def test_escapes_inside_quotes() -> None:
    assert words(r'x "a\"b" "tab\there" "\x41\101"') == ["x", 'a"b', "tab\there", "AA"]


def test_braces_are_tokens_unless_quoted() -> None:
    toks = split_line('group {VI_1 VI_2} "{"', "f", 3)
    assert [t.text for t in toks] == ["group", "{", "VI_1", "VI_2", "}", "{"]
    assert [t.is_open for t in toks] == [False, True, False, False, False, False]
    assert toks[-1].quoted


def test_unterminated_quote_names_file_and_line() -> None:
    with pytest.raises(KeepalivedParseError) as info:
        split_line('script "/bin/check', "ka.conf", 7)
    assert str(info.value).startswith("ka.conf:7: unterminated")


def test_blocks_nest_and_tokens_keep_their_line() -> None:
    text = (
        "vrrp_instance VI_1 {\n  interface eth0\n  virtual_ipaddress {\n    10.0.0.1/24\n  }\n}\n"
    )
    (inst,) = parse_text(text, "ka.conf")
    assert inst.name == "vrrp_instance" and inst.words == ["VI_1"]
    assert inst.block is not None
    iface, vips = inst.block
    assert (iface.name, iface.words, iface.line) == ("interface", ["eth0"], 2)
    assert vips.block is not None and vips.block[0].name == "10.0.0.1/24"
    assert vips.block[0].line == 4 and vips.block[0].file == "ka.conf"


def test_open_brace_on_its_own_line_belongs_to_the_statement_above() -> None:
    (inst,) = parse_text("vrrp_instance VI_1\n{\n  priority 100\n}\n")
    assert inst.block is not None and inst.block[0].words == ["100"]


def test_one_line_block() -> None:
    (group,) = parse_text("vrrp_sync_group G { group { VI_1 VI_2 } }\n")
    assert group.block is not None
    (members,) = group.block
    assert members.block is not None
    assert [t.text for s in members.block for t in s.all_tokens()] == ["VI_1", "VI_2"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("vrrp_instance VI_1 {\n  priority 100\n", 1, "never closed"),
        ("global_defs {\n}\n}\n", 3, "never opened"),
        ("{\n}\n", 1, "without a keyword"),
    ],
)
def test_unbalanced_braces_are_errors_with_location(text: str, line: int, fragment: str) -> None:
    with pytest.raises(KeepalivedParseError) as info:
        parse_text(text, "ka.conf")
    assert info.value.file == "ka.conf" and info.value.line == line
    assert fragment in str(info.value)


def test_include_is_relative_to_the_including_file_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("vrrp_script b {\n  script /bin/true\n}\n")
    (tmp_path / "conf.d" / "a.conf").write_text("vrrp_script a {\n  script /bin/true\n}\n")
    (tmp_path / "main.conf").write_text("global_defs {\n}\ninclude conf.d/*.conf\n")
    parsed = parse_file(str(tmp_path / "main.conf"))
    assert [s.words for s in parsed.statements] == [[], ["a"], ["b"]]
    second = parsed.statements[2]
    assert second.file == str(tmp_path / "conf.d" / "b.conf") and second.line == 1
    assert parsed.files[1:] == [str(tmp_path / "conf.d" / n) for n in ("a.conf", "b.conf")]


def test_include_inside_a_block_splices_in_place(tmp_path: Path) -> None:
    (tmp_path / "vips.inc").write_text("10.0.0.1/24\n10.0.0.2/24\n")
    (tmp_path / "main.conf").write_text(
        "vrrp_instance VI_1 {\n  virtual_ipaddress {\n    include vips.inc\n  }\n}\n"
    )
    (inst,) = parse_file(str(tmp_path / "main.conf")).statements
    assert inst.block is not None and inst.block[0].block is not None
    vips: list[Statement] = inst.block[0].block
    assert [(v.name, v.line, Path(v.file).name) for v in vips] == [
        ("10.0.0.1/24", 1, "vips.inc"),
        ("10.0.0.2/24", 2, "vips.inc"),
    ]


def test_include_brace_expansion(tmp_path: Path) -> None:
    for name in ("web", "db", "mail"):
        (tmp_path / f"{name}.conf").write_text(f"vrrp_script {name} {{\n}}\n")
    (tmp_path / "main.conf").write_text("include {web,db}.conf\n")
    names = [s.words[0] for s in parse_file(str(tmp_path / "main.conf")).statements]
    assert names == ["web", "db"]


def test_missing_include_is_an_error_at_the_include_line(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("global_defs {\n}\n\ninclude missing.conf\n")
    with pytest.raises(KeepalivedParseError) as info:
        parse_file(str(tmp_path / "main.conf"))
    assert info.value.file == str(tmp_path / "main.conf") and info.value.line == 4
    assert "missing.conf does not exist" in str(info.value)


def test_wildcard_include_matching_nothing_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include conf.d/*.conf\n")
    parsed = parse_file(str(tmp_path / "main.conf"))
    assert parsed.statements == []
    assert parsed.notes and "matched no files" in parsed.notes[0]


def test_includea_requires_a_match(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("includea conf.d/*.conf\n")
    with pytest.raises(KeepalivedParseError, match=r"main.conf:1: includea .*no file matches"):
        parse_file(str(tmp_path / "main.conf"))


def test_include_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("# comment\ninclude a.conf\n")
    with pytest.raises(KeepalivedParseError) as info:
        parse_file(str(tmp_path / "a.conf"))
    assert info.value.file == str(tmp_path / "b.conf") and info.value.line == 2
    assert "include loop" in str(info.value)


def test_brace_error_inside_an_included_file_points_into_it(tmp_path: Path) -> None:
    (tmp_path / "bad.conf").write_text("vrrp_instance VI_1 {\n  priority 100\n")
    (tmp_path / "main.conf").write_text("include bad.conf\n")
    with pytest.raises(KeepalivedParseError) as info:
        parse_file(str(tmp_path / "main.conf"))
    assert info.value.file == str(tmp_path / "bad.conf") and info.value.line == 1


def test_missing_top_file_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(KeepalivedParseError, match="cannot read"):
        parse_file(str(tmp_path / "nope.conf"))
