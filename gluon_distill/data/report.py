"""The validation report of a detection dataset, whatever its annotation format.

A loader checks every annotation against its image before training starts, so that a broken
file is reported once, by name, instead of crashing an epoch hours later. It never stops at
the first problem: it records each one here, and callers decide with
:meth:`ValidationReport.raise_if_fatal`. Problems have a severity:

* ``fatal``   -- the image or annotation cannot be used.
* ``skipped`` -- a bad image (missing, undecodable, mostly missing) left out of the dataset
  because ``on_bad_image='skip'``; without it these are fatal.
* ``fixed``   -- repaired on load and counted (e.g. a box clipped to the image).
* ``warning`` -- usable but suspicious.

Class names follow GluonCV's rule (:func:`normalize_class_name`: stripped and lower-cased, so
``RBC`` and ``rbc`` are one class). The report remembers how the files spell each name
(:meth:`ValidationReport.class_name`): the summary lists classes in that spelling and says once
which names the rule changed.
"""
from collections import Counter
from dataclasses import dataclass, field

SEVERITIES = ('fatal', 'skipped', 'fixed', 'warning')
ON_BAD_IMAGE = ('stop', 'skip')


def normalize_class_name(name):
    """GluonCV's normalisation of a class name: stripped and lower-cased."""
    return name.strip().lower()


class DatasetError(ValueError):
    """A dataset has fatal problems; the message is the report summary."""


@dataclass
class Problem:
    """One finding about one file.

    Attributes
    ----------
    severity : str
        One of :data:`SEVERITIES`: ``'fatal'``, ``'skipped'``, ``'fixed'`` or ``'warning'``.
    path : str
        The file concerned (annotation, image or split file).
    message : str
        What is wrong, naming the offending value.
    kind : str
        Category used for counting, e.g. ``'boxes_clipped'``.
    """
    severity: str
    path: str
    message: str
    kind: str = ''

    def __str__(self):
        return '[{}] {}: {}'.format(self.severity, self.path, self.message)


@dataclass
class ValidationReport:
    """All problems found while loading a dataset, plus what was loaded.

    ``counts`` maps a problem kind to how many times it occurred (a clipped box counts once per
    box). The dataset fields (``num_images``, ``objects_per_class``...) are filled by the
    loader (:meth:`set_dataset`) and printed by :meth:`summary`.
    """
    problems: list = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    severity_of: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    source: str = ''
    num_images: int = 0
    num_difficult: int = 0
    objects_per_class: dict = field(default_factory=dict)
    on_bad_image: str = 'stop'
    class_spellings: dict = field(default_factory=dict)
    given_class_spellings: dict = field(default_factory=dict)

    def class_name(self, spelling, given=False):
        """The class name of ``spelling`` (:func:`normalize_class_name`), remembering the
        spelling: one read in an annotation file (or, ``given``, in the class list the caller
        passed) is what :meth:`display_name` returns and what the summary's note quotes."""
        name = normalize_class_name(spelling)
        if given:
            self.given_class_spellings.setdefault(name, spelling.strip())
        else:
            self.class_spellings.setdefault(name, Counter())[spelling.strip()] += 1
        return name

    def display_name(self, name):
        """How the files spell class ``name`` (the most frequent spelling, the first seen of
        equally frequent ones), else the given class list's spelling, else ``name``."""
        if self.class_spellings.get(name):
            return self.class_spellings[name].most_common(1)[0][0]
        return self.given_class_spellings.get(name, name)

    def renamed_classes(self):
        """Sorted ``(spelling, name)`` pairs whose spelling the rule changed."""
        pairs = {(s, n) for n, counts in self.class_spellings.items() for s in counts}
        pairs |= {(s, n) for n, s in self.given_class_spellings.items()}
        return sorted((s, n) for s, n in pairs if s != n)

    def add(self, kind, severity, path, message):
        """Record one problem of ``kind``; returns it."""
        if severity not in SEVERITIES:
            raise ValueError('severity must be one of {}, got {!r}'.format(SEVERITIES, severity))
        problem = Problem(severity, str(path), message, kind)
        self.problems.append(problem)
        self.counts[kind] += 1
        self.severity_of.setdefault(kind, severity)
        return problem

    def fatal(self):
        """The fatal problems (list of :class:`Problem`)."""
        return [p for p in self.problems if p.severity == 'fatal']

    def set_dataset(self, records, classes):
        """Store image and per-class object counts of the loaded ``records``."""
        self.num_images = len(records)
        per_class = Counter()
        self.num_difficult = 0
        for record in records:
            per_class.update(int(label) for label in record.labels)
            self.num_difficult += int(record.difficult.sum())
        self.objects_per_class = {name: per_class.get(i, 0) for i, name in enumerate(classes)}

    def summary(self, max_lines=20):
        """Readable multi-line text: dataset counts, problem counts, then the first problems."""
        num_objects = sum(self.objects_per_class.values())
        lines = ['dataset {}: {} images, {} objects ({} difficult)'.format(
            self.source or '?', self.num_images, num_objects, self.num_difficult)]
        lines += ['  ' + note for note in self.notes]
        renamed = self.renamed_classes()
        if renamed:
            shown = ', '.join('{!r} -> {!r}'.format(s, n) for s, n in renamed[:8])
            lines.append('  class names are compared lower-cased, as GluonCV does: {}{} (the '
                         'spelling of the files is kept for display and COCO category names)'
                         .format(shown, ', ... ({} in all)'.format(len(renamed))
                                 if len(renamed) > 8 else ''))
        if self.objects_per_class:
            lines.append('objects per class:')
            shown = {self.display_name(name): count
                     for name, count in self.objects_per_class.items()}
            width = max(len(name) for name in shown)
            lines += ['  {:<{w}} {:>7}'.format(name, count, w=width)
                      for name, count in shown.items()]
        by_severity = Counter(p.severity for p in self.problems)
        lines.append('problems: {} fatal, {} skipped, {} fixed, {} warning'.format(
            by_severity['fatal'], by_severity['skipped'], by_severity['fixed'],
            by_severity['warning']))
        if by_severity['skipped']:
            lines.append('  {} bad image(s) left out of the dataset (data.on_bad_image=skip)'
                         .format(by_severity['skipped']))
        for kind in sorted(self.counts, key=lambda k: (SEVERITIES.index(self.severity_of[k]), k)):
            lines.append('  {:<26} {:>7}  ({})'.format(kind, self.counts[kind], self.severity_of[kind]))
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: SEVERITIES.index(p.severity))
            lines.append('first problems:')
            lines += ['  ' + str(p) for p in ordered[:max_lines]]
            if len(ordered) > max_lines:
                lines.append('  ... and {} more'.format(len(ordered) - max_lines))
        return '\n'.join(lines)

    def bad_image(self, kind, path, message):
        """Record a problem that makes an image unusable: fatal, or ``skipped`` (the image is
        left out) when ``on_bad_image == 'skip'``."""
        if self.on_bad_image == 'skip':
            return self.add(kind, 'skipped', path, message + '; image left out (on_bad_image=skip)')
        return self.add(kind, 'fatal', path, message)

    def raise_if_fatal(self):
        """Raise :class:`DatasetError` with the summary if any problem is fatal."""
        if self.fatal():
            raise DatasetError(self.summary())
