"""The report of a closed-loop run (`make demo`): success with its interval, per-stage latency,
an episode video, as PNGs and one HTML page a person can open.

Input is `embodied-vision pipeline --json` output (every sim's episodes, every node's
counts and latency per stage); the interval is Wilson's 95 % score interval on the episodes.
"""
import html
import json
import math
from pathlib import Path

__all__ = ['success_interval', 'write_report']


def success_interval(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval of a success rate (95 % by default): sensible at 0 and 1."""
    if episodes < 1:
        raise ValueError('no episodes')
    rate = successes / episodes
    centre = (rate + z * z / (2 * episodes)) / (1 + z * z / episodes)
    half = z * math.sqrt(rate * (1 - rate) / episodes + z * z / (4 * episodes ** 2)) \
        / (1 + z * z / episodes)
    return max(0.0, centre - half), min(1.0, centre + half)


def _sims(summary: dict) -> dict:
    return {name: entry for name, entry in summary['nodes'].items() if 'episodes' in entry}


def _success_plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names, rates, errors = [], [], [[], []]
    for name, entry in _sims(summary).items():
        episodes = entry['episodes']
        wins = sum(e['success'] for e in episodes)
        low, high = success_interval(wins, len(episodes))
        rate = wins / len(episodes)
        names.append(f'{name}\n{wins}/{len(episodes)}')
        rates.append(100 * rate)
        errors[0].append(100 * (rate - low))
        errors[1].append(100 * (high - rate))
    fig, ax = plt.subplots(figsize=(3 + 1.2 * len(names), 3.5))
    ax.bar(names, rates, yerr=errors, capsize=6, color='tab:green')
    ax.set_ylim(0, 100)
    ax.set_ylabel('success (%) with 95 % interval')
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _latency_plot(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [(f'{node}: {stage}', stats['median'], stats['p90'])
            for node, entry in summary['nodes'].items()
            for stage, stats in entry['latency_ms'].items() if stats.get('count')]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * max(1, len(rows))))
    labels = [r[0] for r in rows]
    ax.barh(labels, [r[2] for r in rows], color='tab:orange', alpha=0.4, label='p90')
    ax.barh(labels, [r[1] for r in rows], color='tab:orange', label='median')
    ax.invert_yaxis()
    ax.set_xlabel('ms per message')
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(summary: dict, out: str | Path, title: str, video: str | None = None,
                 notes: str = '') -> Path:
    """`success.png`, `latency.png`, `summary.json` and `index.html` in `out`; `video` (a
    file in `out`) is shown on the page. Returns the page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    _success_plot(summary, out / 'success.png', title)
    _latency_plot(summary, out / 'latency.png')
    rows = []
    for name, entry in _sims(summary).items():
        episodes = entry['episodes']
        wins = sum(e['success'] for e in episodes)
        low, high = success_interval(wins, len(episodes))
        rows.append(f'<tr><td>{html.escape(name)}</td><td>{wins}/{len(episodes)}</td>'
                    f'<td>{100 * wins / len(episodes):.0f}% [{100 * low:.0f}, '
                    f'{100 * high:.0f}]</td></tr>')
    latency = ''.join(
        f'<tr><td>{html.escape(node)}</td><td>{html.escape(stage)}</td>'
        f'<td>{s["median"]:.2f}</td><td>{s["p90"]:.2f}</td><td>{s["count"]}</td></tr>'
        for node, entry in summary['nodes'].items()
        for stage, s in entry['latency_ms'].items())
    media = ''
    if video:
        name = html.escape(Path(video).name)
        media = (f'<video src="{name}" controls autoplay loop muted width="384"></video>'
                 if name.endswith('.mp4') else f'<img src="{name}" width="384">')
    page = out / 'index.html'
    page.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .6em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(notes)}</p>
{media}
<h2>Success</h2>
<table><tr><th>sim</th><th>episodes</th><th>success, 95 % interval</th></tr>
{''.join(rows)}</table>
<p><img src="success.png"></p>
<h2>Latency per stage (ms)</h2>
<table><tr><th>node</th><th>stage</th><th>median</th><th>p90</th><th>n</th></tr>
{latency}</table>
<p><img src="latency.png"></p>
<p>Ran {summary['seconds']:.1f} s. Raw figures: <a href="summary.json">summary.json</a>.</p>
</body></html>
""")
    return page
