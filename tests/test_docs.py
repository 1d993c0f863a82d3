"""The docs: the reference generator (docs/gen_reference.py) and the links between pages."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return gen.generate()


def test_reference_pages_hold_the_public_names(pages: dict[str, str]) -> None:
    assert "index.md" in pages and "unlearnkit.md" in pages
    ssse = pages["unlearnkit.ssse.md"]
    for name in ("ErasureState", "ErasureConfig", "ErasureRequest"):
        assert f"### `{name}`" in ssse
    assert "#### `ErasureState.prepare`" in ssse
    assert "### `UnlearnkitError`" in pages["unlearnkit.errors.md"]
    # every name a package declares in __all__ has its own entry on that package's page
    for file_name in pages:
        if file_name == "index.md":
            continue
        package = importlib.import_module(file_name.removesuffix(".md"))
        for name in getattr(package, "__all__", ()):
            if not isinstance(getattr(package, name), ModuleType):
                assert f"### `{name}`" in pages[file_name], (file_name, name)
        assert f"]({file_name})" in pages["index.md"]


def test_reference_is_deterministic_and_machine_free(pages: dict[str, str]) -> None:
    assert gen.generate() == pages
    for text in pages.values():
        assert not re.search(r" at 0x[0-9a-fA-F]+", text)
        assert str(Path.home()) + "/" not in text
        assert text.endswith("\n") and not text.endswith("\n\n")


def test_missing_packages_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "PACKAGES", ("unlearnkit.errors", "unlearnkit.no_such_package"))
    assert sorted(gen.generate()) == ["index.md", "unlearnkit.errors.md"]


def _example(a: int, /, b: str = "x", *, c: float = 1.0, **kw: object) -> list[int]:
    """Doc."""
    return [a]


def test_signature_rendering() -> None:
    assert gen.signature("_example", _example) == (
        "_example(a: int, /, b: str = 'x', *, c: float = 1.0, **kw: object) -> list[int]"
    )
    assert gen.clean("see :class:`~unlearnkit.ssse.ErasureState` and :func:`a.b`") == (
        "see `ErasureState` and `a.b`"
    )


def test_check_mode_finds_stale_missing_and_extra_pages(tmp_path: Path) -> None:
    out = tmp_path / "reference"
    assert gen.main(["--out", str(out)]) == 0
    assert gen.main(["--out", str(out), "--check"]) == 0
    index = out / "index.md"
    index.write_text(index.read_text() + "edited\n")
    assert gen.main(["--out", str(out), "--check"]) == 1
    assert gen.main(["--out", str(out)]) == 0
    (out / "stale.md").write_text("a page of a removed package\n")
    assert gen.main(["--out", str(out), "--check"]) == 1
    assert gen.main(["--out", str(out)]) == 0 and not (out / "stale.md").exists()
    (out / "unlearnkit.errors.md").unlink()
    assert gen.main(["--out", str(out), "--check"]) == 1


_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links in ``text`` that point into the repository."""
    text = _CODE.sub("", _FENCE.sub("", text))
    targets = [m.group(1) for m in _LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z]+:|#", t)]


def test_relative_links_finder() -> None:
    text = "[a](x.md) [b](https://e.org) [c](#anchor) [d](../y.md#part) `[e](z.md)`\n```\n[f](w.md)\n```"
    assert relative_links(text) == ["x.md", "../y.md#part"]


def test_every_relative_link_in_docs_resolves() -> None:
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in relative_links(page.read_text(encoding="utf-8")):
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_index_links_every_doc_page() -> None:
    index = DOCS / "index.md"
    linked = {(DOCS / t.split("#", 1)[0]).resolve() for t in relative_links(index.read_text())}
    top = {p.resolve() for p in DOCS.glob("*.md")} | {p.resolve() for p in DOCS.glob("guide/*.md")}
    top |= {(DOCS / "reference" / "index.md").resolve(), (DOCS / "results" / "README.md").resolve()}
    assert sorted(str(p.relative_to(DOCS)) for p in top - linked - {index.resolve()}) == []


def python_blocks(text: str) -> str:
    """The ```python blocks of a page, joined into one script."""
    return "\n".join(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M))


def test_python_blocks_extraction() -> None:
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == "x = 1\n\ny = x\n"


def test_guide_erase_your_own_model_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unlearnkit

    if not hasattr(unlearnkit, "prepare"):
        pytest.skip("the facade (unlearnkit.prepare) is not in this tree yet")
    script = python_blocks((DOCS / "guide" / "erase-your-own-model.md").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "guide"}
    exec(compile(script, "erase-your-own-model.md", "exec"), namespace)
    erased = namespace["erased"]
    assert erased.eps_rule == "retained_loss"  # the retrain-free default  # type: ignore[attr-defined]
    for part in ("retain", "holdout"):  # the utility budget held
        acc = erased.accuracy[part]  # type: ignore[attr-defined]
        assert acc["before"] - acc["after"] <= namespace["uk"].DEFAULT_UTILITY_BUDGET  # type: ignore[attr-defined]
    assert (tmp_path / "runs" / "state" / "manifest.json").exists()
    assert len(namespace["state"].ledger) == 1  # type: ignore[attr-defined]


def test_benchmark_guide_experiment_file_is_valid() -> None:
    yaml = pytest.importorskip("yaml")
    from unlearnkit.bench import parse_experiment

    text = (DOCS / "guide" / "benchmark.md").read_text()
    (block,) = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    exp = parse_experiment(yaml.safe_load(block))
    assert [m.name for m in exp.methods] == ["ft", "ga", "ssse"] and exp.seeds == [0, 1, 2]


def test_every_test_named_in_the_robustness_table_exists() -> None:
    """docs/robustness.md names the test that checks each defect: each file exists and each
    ``::name`` (or ``::prefix_*``) is a test function defined in it."""
    text = (DOCS / "robustness.md").read_text()
    refs = re.findall(r"`(tests/[\w/]+\.py)((?:::[\w*]+)?)`", text)
    assert len(refs) >= 15
    for path, name in refs:
        source = (ROOT / path).read_text()
        if name:
            pattern = re.escape(name[2:]).replace(r"\*", r"\w*")
            assert re.search(rf"^def {pattern}\(", source, re.M), f"{path}{name}"
    # a bare ``::name`` continues the file named before it in the same cell
    for name in re.findall(r"`::(\w+)`", text):
        assert any(
            re.search(rf"^def {name}\(", p.read_text(), re.M) for p in ROOT.glob("tests/**/*.py")
        ), name
