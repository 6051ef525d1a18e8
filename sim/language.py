"""Language stage templates (Lang4Sim2Real style).

Every task is split into stages (moving to, grasping, lifting, moving over, releasing, ...).
Each stage has a few template sentences; the object and container names are filled in per
episode. The first template of a stage is the canonical `stage_text` reported in `info`; the
full list is what language-grounded pretraining samples from (and what sentence-similarity
matrices are indexed by, so keep the order stable and key caches by `template_hash()`).

    >>> STAGE_TEMPLATES['pick'][1][0].format(obj='carrot', target='bowl')
    'grasping the carrot'
"""
import hashlib
import json

__all__ = [
    'STAGE_TEMPLATES',
    'TemplateSet',
    'template_hash',
]

# One list of template sentences per stage. Keys are template families shared by tasks.
STAGE_TEMPLATES: dict[str, list[list[str]]] = {
    'reach': [
        [
            'moving to the {target}',
            'the gripper is moving towards the {target}',
            'reaching for the {target}',
        ],
        [
            'the gripper is at the {target}',
            'reached the {target}',
            'holding the gripper at the {target}',
        ],
    ],
    'push': [
        [
            'moving behind the {obj}',
            'the gripper is moving to the far side of the {obj}',
            'getting ready to push the {obj}',
        ],
        [
            'pushing the {obj} towards the {target}',
            'the gripper is sliding the {obj} to the {target}',
            'moving the {obj} along the table to the {target}',
        ],
        [
            'the {obj} is on the {target}',
            'pushed the {obj} onto the {target}',
            'the {obj} has reached the {target}',
        ],
    ],
    'pick': [
        [
            'moving to the {obj}',
            'the gripper is open and moving towards the {obj}',
            'reaching for the {obj}',
        ],
        [
            'grasping the {obj}',
            'the gripper is closing around the {obj}',
            'picking up the {obj}',
        ],
        [
            'lifting the {obj}',
            'the gripper is raising the {obj} off the table',
            'the {obj} is lifted',
        ],
        [
            'moving the {obj} over the {target}',
            'carrying the {obj} towards the {target}',
            'the {obj} is above the table, moving to the {target}',
        ],
        [
            'releasing the {obj} {relation} the {target}',
            'the gripper opens and drops the {obj} {relation} the {target}',
            'the {obj} is {relation} the {target}',
        ],
    ],
}


class TemplateSet:
    """Stage templates of one task with the episode's names filled in.

    Args:
        families: template family per step of the task, e.g. `['pick', 'pick']` for a
            two-step pick-and-place; stages are numbered consecutively across steps.
        names: per step, the names to fill in (`obj`, `target`, `relation`).
    """

    def __init__(self, families: list[str], names: list[dict[str, str]]):
        unknown = [f for f in families if f not in STAGE_TEMPLATES]
        if unknown:
            raise ValueError(
                f'unknown template family {unknown}; valid: {sorted(STAGE_TEMPLATES)}')
        if len(families) != len(names):
            raise ValueError('families and names must have the same length')
        self._sentences: list[list[str]] = []
        for family, fill in zip(families, names):
            for stage in STAGE_TEMPLATES[family]:
                self._sentences.append([t.format(**fill) for t in stage])

    @property
    def num_stages(self) -> int:
        """Number of stages of the task."""
        return len(self._sentences)

    def sentences(self, stage: int) -> list[str]:
        """All template sentences of `stage`, canonical first."""
        if not 0 <= stage < self.num_stages:
            raise ValueError(f'stage {stage} out of range [0, {self.num_stages})')
        return list(self._sentences[stage])

    def text(self, stage: int) -> str:
        """The canonical sentence of `stage`."""
        return self.sentences(stage)[0]

    def all(self) -> list[list[str]]:
        """Every stage's sentences, in stage order."""
        return [list(s) for s in self._sentences]


def template_hash() -> str:
    """A short hash of the whole template table, to key cached sentence embeddings."""
    blob = json.dumps(STAGE_TEMPLATES, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
