"""Client.watch (issue 18): a read-only observer sees a session's results as
the streaming client does, the all-sessions summaries, previews, errors and
the operator's recorded picks."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import logstar
from conftest import FAST, synth


@pytest.fixture(scope="module")
def frame(workdir):
    return synth(workdir, seed=11, noise=0.1)


def _collect(iterator, n, out):
    """Reads until n answers were delivered or skipped."""
    for w in iterator:
        out.append(w)
        if sum(1 + x.skipped for x in out) >= n:
            break


def test_watcher_sees_each_result_the_stream_gets(client, frame):
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    watched = client.watch(session.id, preview=True)
    seen = []
    t = threading.Thread(target=_collect, args=(watched, 3, seen))
    t.start()
    records = list(session.stream([frame.image] * 3))
    t.join(timeout=60)
    watched.close()
    assert [r.kind for r in records] == ["result"] * 3
    # Every result delivered or counted as skipped (a reader slower than the
    # stream gets the latest), in order, the last one always delivered.
    assert sum(1 + w.skipped for w in seen) == 3
    sequences = [w.result.sequence for w in seen]
    assert sequences == sorted(sequences) and sequences[-1] == records[-1].sequence
    by_sequence = {r.sequence: r for r in records}
    for w in seen:
        r = by_sequence[w.result.sequence]
        np.testing.assert_array_equal(w.result.atoms, r.atoms)
        # The preview is the frame itself (128² fits): its brightest pixels
        # are where the frame's are (the percentile stretch is monotone).
        assert w.preview.shape == frame.image.shape and w.preview_scale == 1.0
        hot = frame.image > np.percentile(frame.image, 99.5)
        assert (w.preview[hot] == 255).all()


def test_all_sessions_summaries_and_picks(client, frame):
    watched = client.watch(all_sessions=True)
    seen = []
    t = threading.Thread(target=_collect, args=(watched, 1, seen))
    t.start()
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    list(session.stream([frame.image]))
    t.join(timeout=60)
    watched.close()
    assert len(seen) == 1 and seen[0].result is None
    assert seen[0].summary.session_id == session.id
    assert seen[0].summary.counters.frames_analysed == 1
    info = session.update(choices=[(0, 0)])
    assert [(p.window, p.front_index, p.frames_analysed) for p in info.picks] == [(0, 0, 1)]


def test_errors(client):
    with pytest.raises(ValueError):
        client.watch()
    with pytest.raises(logstar.RpcFailed, match="session_id") as e:
        next(client.watch("nobody-here"))
    assert e.value.code == "NOT_FOUND"


def test_close_from_another_thread_ends_the_iteration(client, frame):
    session = client.session(prior=frame.prior, settings=FAST, overload="block")
    watched = client.watch(session.id)
    seen = []
    t = threading.Thread(target=lambda: seen.extend(watched))
    t.start()
    watched.close()
    t.join(timeout=10)
    assert not t.is_alive() and seen == []
