"""The pytest plugin (``pytest11`` entry point), tested with pytest's own ``pytester``: inner
pytest sessions that load the plugin as a user's project would."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)  # runnable blocks only (no title)


def doc_blocks() -> list[str]:
    return FENCE.findall(DOC.read_text())


def test_docs_page_has_the_examples_it_promises() -> None:
    blocks = doc_blocks()
    assert len(blocks) >= 4
    first = blocks[0]
    assert "App(eager=True)" in first and "redis" not in first.replace("redisq", "")
    code_lines = [line for line in first.splitlines() if line.strip()]
    assert len(code_lines) < 10  # a task and its test, in under ten lines
    assert any("redisq_app" in b and "redisq_worker" in b for b in blocks)


@pytest.mark.parametrize("backend", ["fake", "real"])
def test_every_docs_example_passes_as_a_test_file(pytester: pytest.Pytester,
                                                  backend: str) -> None:
    blocks = doc_blocks()
    pytester.makepyfile(**{f"test_doc_{i}": code for i, code in enumerate(blocks)})
    result = pytester.runpytest("-p", "no:cacheprovider", f"--redisq-backend={backend}")
    expected = sum(code.count("\ndef test_") + code.startswith("def test_") for code in blocks)
    result.assert_outcomes(passed=expected)


def test_the_eager_example_needs_no_server(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A user with no Redis at all: the first example of docs/testing.md passes, in a fresh
    interpreter whose PATH has no server binary and whose REDIS_URL points nowhere."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert shutil.which("redis-server") is None and shutil.which("valkey-server") is None
    pytester.makepyfile(test_eager=doc_blocks()[0])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           "-p", "no:redisq")  # not even the plugin
    result.assert_outcomes(passed=1)


def test_fixtures_empty_redis_between_tests_and_leave_app_alone(
        pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def app():
            return "the project's own app fixture"
    """)
    pytester.makepyfile("""
        def test_one(app, redisq_app, redisq_backend):
            assert app == "the project's own app fixture"
            assert redisq_backend == "real"
            redisq_app.enqueue("not.run", args=[1])
            assert redisq_app.queue("default").depth() == 1

        def test_two(redisq_app):
            assert redisq_app.queue("default").depth() == 0
            assert redisq_app.queues() == []
    """)
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly").assert_outcomes(passed=2)


def test_redisq_app_option_hands_out_the_projects_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(myproject="""
        from redisq import App

        app = App("redis://127.0.0.1:1/0")

        @app.task(name="myproject.square")
        def square(n: int) -> int:
            return n * n
    """)
    pytester.makeini("""
        [pytest]
        redisq_backend = fake
        redisq_app = myproject:app
    """)
    pytester.makepyfile(test_project="""
        import myproject

        def test_uses_it(redisq_app, redisq_worker):
            assert redisq_app is myproject.app
            job = myproject.square.delay(7)
            assert redisq_worker()["succeeded"] == 1 and job.result() == 49

        def test_given_back_after():
            assert myproject.app.url == "redis://127.0.0.1:1/0"
            assert myproject.app._client_factory is None
    """)
    pytester.syspathinsert()
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_bad_backend_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nredisq_backend = memory\n")
    pytester.makepyfile("def test_x(redisq_app):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*redisq_backend must be one of*"])


def test_a_marker_picks_the_backend_of_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        def is_fake(app):
            return type(app.client).__module__.startswith("fakeredis")

        def test_session_default(redisq_app):
            assert is_fake(redisq_app)

        @pytest.mark.redisq_backend("real")
        def test_real(redisq_app, redisq_worker):
            assert not is_fake(redisq_app) and redisq_app.client.ping()
            job = redisq_app.task(name="t.one")(lambda: 1).delay()
            assert redisq_worker()["succeeded"] == 1 and job.result() == 1

        @pytest.mark.redisq_backend("memory")
        def test_bad(redisq_app):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers",
                                "--redisq-backend=fake")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*takes 'real' or 'fake', not 'memory'*"])
