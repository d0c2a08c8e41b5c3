"""The instrument's logic: capture -> model -> knobs -> player, with no I/O of its own.

The caller feeds incoming messages to ``handle(message, now)`` and calls ``tick(now)`` often
(every millisecond or so); both return the MIDI messages to send now. Time is passed in, so
tests drive it without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import mido
import numpy as np

from .attributes import compute
from .axis import (
    HELD_BY_MORPH,
    Reach,
    TableCache,
    axis_table,
    landed_as_played,
    search_key,
    search_offsets,
)
from .capture import Capture, Phrase
from .clock import InternalClock, MidiClock
from .compose import Setting, Source, base_code, compose
from .knob_state import KnobState
from .knobs import BUTTONS, Knob, Preset
from .model import ModelInfo, PhraseKeeper, refined_code
from .player import Player, Variation, all_notes_off
from .tokens import Vocabulary, fit_notes, notes_to_tokens, tokens_to_notes, unfold_notes
from .units import PITCH_VALUED

CLOCK_MESSAGES = {"clock", "start", "stop", "continue", "songpos"}
DEFAULT_FIDELITY = 8.0  # the largest stay bonus (nats) on the phrase's notes, no knob set
LATE_STEPS_PLAYED = 2  # a step played this many steps late still sounds; older ones are silent
MAX_CATCH_UP_STEPS = 4096  # beyond this (a suspended laptop) the grid jumps to now


@dataclass
class Refinement:
    """A phrase's refined code: what it is found from, the step it takes over at, and (once
    found) the code."""

    model: object
    tokens: np.ndarray  # (L,)
    mu: np.ndarray  # (d,)
    logvar: np.ndarray  # (d,)
    at_step: int
    code: np.ndarray | None = None

    def find(self) -> np.ndarray:
        return refined_code(self.model, self.tokens, self.mu, self.logvar)


class ModelLike(Protocol):
    info: ModelInfo

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_tokens(self, z: np.ndarray, temperature: float = 0.0,
                      rng: np.random.Generator | None = None) -> np.ndarray: ...


@dataclass
class Timings:
    """Seconds spent turning a change into a ready variation (for the status line and bench)."""

    decode: list[float] = field(default_factory=list)
    phrase: list[float] = field(default_factory=list)
    lookups: int = 0  # knob moves answered from a precomputed axis table
    rests: int = 0  # knob moves back to the centre: the phrase itself, no decode

    def add(self, bucket: list[float], seconds: float) -> None:
        bucket.append(seconds)
        if len(bucket) > 10000:
            del bucket[:5000]


class ModelSwapError(ValueError):
    """Models that cannot take turns in one engine (another time grid); one line."""


class Engine:
    def __init__(self, model: ModelLike, preset: Preset, clock: InternalClock | MidiClock,
                 rng: np.random.Generator | None = None, models: list | None = None):
        self.model, self.preset, self.clock = model, preset, clock
        self.models = list(models) if models else [model]  # Program Change picks among these
        check_same_grid(self.models)
        self.pending_model: ModelLike | None = None  # swaps in at the next bar line
        self.info = model.info
        self.seq_len = self.info.grid.seq_len
        self.rng = rng or np.random.default_rng()
        self.capture = Capture(self.info.vocab, self.seq_len)
        self.knobs = KnobState(preset)
        self.player = Player(channel=preset.options.channel - 1)
        self.echo = Player(channel=preset.options.passthrough_channel - 1)
        self.player.neighbour = self.echo
        self.silent_steps: list[int] = []  # steps played silently: the loop fell behind
        self.forced_silent: set[int] | None = None  # a replay: exactly the live session's
        self.deferred: list[tuple[float, list[mido.Message]]] = []  # (grid position, messages)
        #   of steps whose note was played late: they go out at their played time
        self.prior_z = self.rng.standard_normal(self.info.latent_dim).astype(np.float32)
        # Sampling (temperature > 0) for grid step s draws from Generator((sample_seed, s)):
        # a decode depends on the state and the step it is for, not on how often it ran
        self.sample_seed = int(self.rng.integers(2**62))
        self.stale = False  # knobs moved since the last decode: decode before the next step
        self.stale_knob: str | None = None  # the knob moved last (its table may answer)
        self.phrase: Phrase | None = None
        self.phrase_z: np.ndarray | None = None  # (d,) the phrase's code (mean, then refined)
        self.refinement: Refinement | None = None  # the refined code, due at its step
        self.variation: Variation | None = None
        self._pending: Variation | None = None  # decoded, waiting for its step or bar
        self.pending_from: int | None = None  # play the pending variation from this step
        self.pending_origin: int | None = None  # ... with its loop counted from this step
        self.origin = 0  # the step where the loop's step 0 falls
        self.next_step: int | None = None
        self.frozen = False
        self.buttons: dict[str, bool] = {}
        self.timings = Timings()
        self.tables = TableCache()
        self.lock = threading.RLock()  # the daemon's loop and its table worker share the engine
        self.last_reaches: dict[str, Reach] = {}  # where value knobs landed, last decode
        self.slot_b: np.ndarray | None = None  # (d,) the morph destination's code
        self.slot_b_phrase: Phrase | None = None
        self.keep_requested = False  # the keep button: the daemon stores the variation
        self.notices: list[str] = []  # lines for the user; the daemon shows and clears them

    # ------------------------------------------------------------ input

    def handle(self, message: mido.Message, now: float) -> list[mido.Message]:
        """React to one incoming message; returns messages to send now."""
        if message.type in CLOCK_MESSAGES:
            return self._clock_message(message, now)
        if not hasattr(message, "channel") or not self._listening(message.channel):
            return []
        if message.type == "note_on" and message.velocity > 0:
            return self._note_on(message, now)
        if message.type in ("note_on", "note_off"):
            return self._note_off(message, now)
        if message.type == "control_change":
            knob = self.preset.find(message.control, message.channel + 1)
            if knob is not None:
                self._knob(knob, message.value, now)
        if message.type == "program_change":
            self._program_change(message.program)
        return []

    def _program_change(self, program: int) -> None:
        if len(self.models) == 1:
            self.notices.append(f"Program Change {program}: only one model is loaded "
                                "(load more with --model NAME --model NAME …)")
            return
        self.request_model(self.models[program % len(self.models)])

    # ------------------------------------------------------------ models

    def request_model(self, model: ModelLike) -> None:
        """Play ``model`` from the next bar line (a reloaded one replaces its namesake)."""
        check_same_grid([self.model, model])
        for index, known in enumerate(self.models):
            if getattr(known, "directory", None) == getattr(model, "directory", object()):
                self.models[index] = model
        self.pending_model = model

    def _swap_model(self, step: int) -> list[mido.Message]:
        """At a bar line: notes closed, the phrase (and slot B) re-encoded by the new model,
        knobs kept by name (a knob for an axis the model lacks rests)."""
        model, self.pending_model = self.pending_model, None
        self.deferred = []  # a late note-on after its note-off would hang
        messages = self.player.panic()
        old = self.info.vocab
        self.model, self.info = model, model.info
        self.capture.vocab = model.info.vocab
        if len(self.prior_z) != self.info.latent_dim:  # the prior knob's sample, redrawn
            self.prior_z = self.rng.standard_normal(self.info.latent_dim).astype(np.float32)
        self.tables = TableCache()
        self.last_reaches = {}
        if self.slot_b_phrase is not None:
            self.slot_b_phrase = refit(self.slot_b_phrase, old, self.info.vocab, self.seq_len)
            self.slot_b = model.encode(self.slot_b_phrase.tokens[None])[0][0].astype(np.float32)
        if self.phrase is not None:  # the loop keeps its grid: a swap is not a new phrase
            self.set_phrase(refit(self.phrase, old, self.info.vocab, self.seq_len), step,
                            origin=self.origin if self.variation is not None else step)
        return messages

    def _listening(self, channel: int) -> bool:
        wanted = self.preset.options.input_channels
        return not wanted or channel + 1 in wanted

    def _position(self, now: float) -> float:
        if not self.clock.running and isinstance(self.clock, InternalClock):
            self.clock.start(now)  # the internal bar grid starts at the first note played
        position = self.clock.position(now)
        return 0.0 if position is None else position

    def _note_on(self, message: mido.Message, now: float) -> list[mido.Message]:
        self.capture.note_on(message.note, message.velocity, self._position(now))
        if not self.preset.options.passthrough:
            return []
        return [self.echo.note_on(message.note, velocity=message.velocity)]

    def _note_off(self, message: mido.Message, now: float) -> list[mido.Message]:
        self.capture.note_off(message.note, self._position(now))
        if self.preset.options.passthrough and (self.echo.channel, message.note) in \
                self.echo.open_notes:
            return [self.echo.note_off(message.note)]
        return []

    def _clock_message(self, message: mido.Message, now: float) -> list[mido.Message]:
        event = self.clock.handle(message, now)
        if event == "start":
            self.next_step, self.origin = None, 0
        elif event in ("continue", "seek"):
            self.next_step = None
        elif event == "stop":
            self.next_step, self.deferred = None, []
            channels = {c - 1 for c in self.preset.output_channels()}
            return self.player.panic() + self.echo.panic() + all_notes_off(channels)
        return []

    def _knob(self, knob: Knob, value: int, now: float) -> None:
        if knob.target in BUTTONS:
            pressed, was = value >= 64, self.buttons.get(knob.target, False)
            self.buttons[knob.target] = pressed
            if pressed != was:
                self._button(knob.target, pressed, now)
            return
        if self.knobs.move(knob, value) and not self.frozen:
            self._refresh(now, moved=knob.target)

    def _button(self, target: str, pressed: bool, now: float) -> None:
        if target == "freeze":
            self.frozen = pressed
            if not pressed:
                self._refresh(now)
        elif target == "reseed" and pressed:
            self.prior_z = self.rng.standard_normal(self.info.latent_dim).astype(np.float32)
            self._refresh(now)
        elif target in ("capture", "slot_a") and pressed and not self.frozen:
            self._capture_last_bars(now)
        elif target == "slot_b" and pressed:
            self._capture_slot_b(now)
        elif target == "keep" and pressed:
            self.keep_requested = True

    # ------------------------------------------------------------ model

    def prior_blend(self) -> float:
        return self.knobs.value_of("prior") or 0.0

    def offset_base(self, leave_out: str | None = None, morph: bool = True) -> np.ndarray:
        """(d,) the phrase (morphed towards slot B unless ``morph`` is False) moved by every
        offset knob (but ``leave_out``), blended towards the prior sample (``compose``)."""
        return base_code(self.composed_phrase(), self.setting(), self.info, leave_out, morph)

    def setting(self) -> Setting:
        """Where the knobs are, as ``compose`` takes them."""
        return Setting({k: v for k, v in self.knobs.offsets().items() if k in self.info.axes},
                       dict(self.knobs.targets()),
                       (self.knobs.value_of("morph") or 0.0) if self.morphing() else 0.0,
                       self.prior_blend())

    def composed_phrase(self) -> Source:
        return Source(self.phrase_z, self.phrase.tokens, self.slot_b, self.prior_z,
                      self.pitch_shift())

    def fidelity(self) -> float:
        """The stay bonus on the phrase's onsets (the fidelity knob, else the default)."""
        value = self.knobs.value_of("fidelity")
        return DEFAULT_FIDELITY if value is None else value

    @property
    def editor(self):
        """What the engine decodes with: the model, its decodes edits of the phrase that
        move what the knobs move (``PhraseKeeper``)."""
        return self.editor_for()

    def editor_for(self, *also: str):
        """The editor following the attributes the knobs move (and ``also``)."""
        if self.phrase is None:
            return self.model
        moved = {k for k, v in self.knobs.offsets().items() if v and k in self.info.axes}
        moved |= set(self.knobs.targets()) | set(also)
        if self.morphing():
            moved |= set(HELD_BY_MORPH)
        follow = ("notes", *sorted(moved & set(self.info.axes) - {"notes"}))
        return PhraseKeeper(self.model, self.phrase.tokens, self.fidelity(), follow,
                            origin=self.phrase_z if self.offsets_only() else None)

    def offsets_only(self) -> bool:
        """No value knob, morph or prior blend: the edit carries the offset knobs' move onto
        the phrase, measured from its code."""
        return not self.knobs.targets() and not self.morphing() and self.prior_blend() == 0

    def at_rest(self) -> bool:
        """Every knob at its centre (no offset, no target, no morph, no prior, temperature
        0): the phrase itself plays, not the model's reading of it."""
        offsets = [v for k, v in self.knobs.offsets().items() if k in self.info.axes]
        return (not any(offsets) and not self.knobs.targets() and not self.morphing()
                and self.prior_blend() == 0 and not self.knobs.value_of("temperature"))

    def kept_notes(self) -> tuple[int, int] | None:
        """(notes of the phrase the variation plays as they were, notes of the phrase)."""
        if self.phrase is None or self.variation is None:
            return None
        own = Variation.from_tokens(self.phrase.tokens, self.info.vocab, -self.pitch_shift())
        wanted = set(zip(np.flatnonzero(own.onset), own.sounding[own.onset], strict=True))
        playing = self.variation
        heard = set(zip(np.flatnonzero(playing.onset), playing.sounding[playing.onset],
                        strict=True))
        return len(wanted & heard), len(wanted)

    def morphing(self) -> bool:
        return self.slot_b is not None and (self.knobs.value_of("morph") or 0.0) > 0

    def latent(self) -> np.ndarray | None:
        """(d,) z of the phrase as the knobs set it (``compose``); ``self.last_reaches`` says
        where the value knobs landed."""
        if self.phrase_z is None:
            return None
        z, self.last_reaches = compose(self.editor, self.composed_phrase(), self.setting(),
                                       self.info, self.tables)
        return z

    def knob_state(self) -> dict[str, float]:
        """Every knob's value (offsets in spreads, targets in units, controls as set)."""
        return {knob.target: round(knob.value(self.knobs.values[index]), 4)
                for index, knob in enumerate(self.preset.knobs) if knob.target not in BUTTONS}

    def pitch_shift(self) -> int:
        """Semitones the capture moved the phrase to fit the model's range."""
        return 12 * self.phrase.octave_shift if self.phrase is not None else 0

    def playing_value(self, name: str) -> float:
        """Attribute ``name`` of the playing variation, in the user's units."""
        if self.variation is None:
            return float("nan")
        value = float(compute(name, self.variation.tokens, self.info.vocab, self.info.grid))
        return value - self.pitch_shift() if name in PITCH_VALUED else value

    def _decode(self, moved: str | None = None, step: int | None = None
                ) -> Variation | None:
        """The variation for the knobs as they are, to play from grid step ``step``."""
        if self.phrase_z is None:
            return None
        temperature = self.knobs.value_of("temperature") or 0.0
        if self.at_rest():
            tokens = self.phrase.tokens
            self.timings.rests += 1
        else:
            tokens = self._lookup(moved) if temperature == 0 else None
        if tokens is None:
            z = self.latent()
            rng = np.random.default_rng((self.sample_seed, max(0, step or 0)))
            also = (moved,) if moved in self.info.axes else ()  # as its knob table would
            targets = self.knobs.targets()
            editor = self.editor_for(*also)
            if "notes" in targets and isinstance(editor, PhraseKeeper):
                editor = editor.exactly(targets["notes"])
            tokens = editor.decode_tokens(z[None], temperature, rng)[0]
            self.last_reaches = landed_as_played(self.last_reaches, tokens, self.info, targets)
        variation = Variation.from_tokens(tokens, self.info.vocab, -self.pitch_shift())
        groove = self.phrase.groove if self.phrase is not None else None
        return variation if groove is None else variation.with_feel(groove)

    def _lookup(self, moved: str | None) -> np.ndarray | None:
        """The decode for offset knob ``moved`` from its precomputed table, if there is one.

        Only when no value knob is active and nothing is morphing: a value target and a held
        attribute depend on every other axis.
        """
        if moved is None or moved not in self.info.axes or self.knobs.targets() \
                or self.morphing():
            return None
        table = self.tables.get(self.knob_table_key(moved))
        offset = self.knobs.offsets().get(moved)
        row = table.row(offset) if table is not None and offset is not None else None
        if row is None:
            return None
        self.timings.lookups += 1
        return table.tokens[row]

    def knob_table_key(self, name: str) -> tuple:
        return TableCache.key(name, self.offset_base(leave_out=name), 1.0 - self.prior_blend(),
                              f"knob, fidelity {self.fidelity():.4f}")

    def missing_tables(self) -> list[tuple]:
        """(key, base, axis, offsets, scale, editor) of each table not yet computed: every position
        an offset knob can take, decoded from the current state of the others; and the
        search along a value knob's axis, so its first move is a lookup too."""
        if self.phrase_z is None or self.morphing():
            return []
        targets = self.knobs.targets()
        jobs = []
        for knob in self.preset.knobs:
            if knob.target not in self.info.axes:
                continue
            if knob.mode == "value" and set(targets) <= {knob.target}:
                jobs += self.missing_search(knob.target)
            elif knob.mode == "offset" and not targets:
                key = self.knob_table_key(knob.target)
                if self.tables.get(key) is None:
                    positions = np.array([knob.value(cc) for cc in range(128)])
                    jobs.append((key, self.offset_base(leave_out=knob.target), knob.target,
                                 positions, 1.0 - self.prior_blend(),
                                 self.editor_for(knob.target)))
        return jobs

    def missing_search(self, name: str) -> list[tuple]:
        """The value search ``resolve_targets`` would run for ``name`` now, if not cached."""
        base, scale = self.offset_base(), 1.0 - self.prior_blend()
        editor = replace(self.editor_for(name), origin=None)  # as it decodes once moved
        key = search_key(editor, name, base, scale)
        if self.tables.get(key) is not None:
            return []
        return [(key, base, name, search_offsets(), scale, editor)]

    def prepare_tables(self) -> int:
        """Compute the missing knob tables (the daemon's worker thread calls this when idle;
        tests call it directly). Returns how many were computed.

        The jobs are read under the lock, so a key and its base always belong together; the
        decodes run outside it, so the loop never waits for them.
        """
        with self.lock:
            jobs = self.missing_tables()
        for key, base, name, positions, scale, editor in jobs:
            table = axis_table(editor, self.info, base, name, positions, scale)
            with self.lock:
                self.tables.put(key, table)
        return len(jobs)

    def _refresh(self, now: float, moved: str | None = None) -> None:
        """A knob moved: decode before the next step (``settle``), not now. A fast sweep sends
        a CC every few milliseconds; only the state at the step is heard."""
        self.stale, self.stale_knob = True, moved

    @property
    def reaches(self) -> dict[str, Reach]:
        """Where each value knob's target landed (knob moves decoded first)."""
        self.settle()
        return self.last_reaches

    @property
    def pending(self) -> Variation | None:
        """The variation waiting for its step or bar (knob moves decoded first)."""
        self.settle()
        return self._pending

    def settle(self) -> None:
        """Decode after knob moves, if any; the swap waits for the next step or bar. The loop
        calls this when it has time before the next step, and every step calls it."""
        if not self.stale:
            return
        self.stale = False
        started = time.perf_counter()
        variation = self._decode(self.stale_knob, self.next_step)
        self.timings.add(self.timings.decode, time.perf_counter() - started)
        if variation is not None:
            waiting_phrase = self._pending is not None and self.pending_from is not None
            self._pending = variation  # a phrase still waiting for its bar line keeps waiting
            self.pending_from = self.pending_from if waiting_phrase else None

    def set_phrase(self, phrase: Phrase, start_step: int, origin: int | None = None) -> None:
        """Encode a new phrase and play its variation from ``start_step``, its loop counted
        from ``origin`` (default: from ``start_step``)."""
        started = time.perf_counter()
        mu, logvar = self.model.encode(phrase.tokens[None])
        self.phrase, self.phrase_z = phrase, mu[0].astype(np.float32)
        self.refinement = Refinement(self.model, phrase.tokens, mu[0], logvar[0],
                                     start_step + self.info.grid.steps_per_bar)
        self.player.velocity = max(1, min(127, phrase.velocity))
        self._pending, self.pending_from = self._decode(step=start_step), start_step
        self.pending_origin = start_step if origin is None else origin
        self.stale = False  # the decode above has every knob as it is
        self.timings.add(self.timings.phrase, time.perf_counter() - started)

    def _capture_slot_b(self, now: float) -> None:
        """The last L steps up to the nearest bar line become the morph destination."""
        phrase = self.capture.take(self._nearest_bar_line(self._position(now)) - self.seq_len)
        if phrase is not None:
            mu, _ = self.model.encode(phrase.tokens[None])
            self.slot_b, self.slot_b_phrase = mu[0].astype(np.float32), phrase
            if (self.knobs.value_of("morph") or 0.0) > 0:
                self._refresh(now)

    def _capture_last_bars(self, now: float) -> None:
        """The trigger CC: the last L steps up to the current bar line, from the next bar."""
        position = self._position(now)
        bar_line = self._nearest_bar_line(position)
        phrase = self.capture.take(bar_line - self.seq_len)
        if phrase is not None:
            next_bar = bar_line + self.info.grid.steps_per_bar
            self.set_phrase(phrase, bar_line if bar_line > position else next_bar)

    def _nearest_bar_line(self, position: float) -> int:
        """The bar line nearest ``position`` (steps): a press just before a bar counts."""
        bar = self.info.grid.steps_per_bar
        return math.floor(position / bar + 0.5) * bar

    # ------------------------------------------------------------ time

    def tick(self, now: float) -> list[mido.Message]:
        """Play every grid step that has come due; returns messages to send now."""
        position = self.clock.position(now)
        if position is None:
            return []
        current = math.floor(position + 1e-9)
        if self.next_step is None or current - self.next_step > MAX_CATCH_UP_STEPS:
            self.next_step = current  # (re)start, or back from a sleep: no burst, no backlog
        messages = self.due(position)
        while self.next_step <= current:
            audible = current - self.next_step <= LATE_STEPS_PLAYED
            if self.forced_silent is not None:
                audible = self.next_step not in self.forced_silent
            if not audible:
                self.silent_steps.append(self.next_step)
            messages += self.due(self.next_step) + self._step(self.next_step, audible)
            self.next_step += 1
        return messages + self.due(position)

    def due(self, position: float) -> list[mido.Message]:
        """The deferred messages whose time has come by grid ``position``."""
        messages = [m for at, batch in self.deferred if at <= position + 1e-9 for m in batch]
        self.deferred = [(at, batch) for at, batch in self.deferred if at > position + 1e-9]
        return messages

    def _step(self, step: int, audible: bool = True) -> list[mido.Message]:
        """One grid step: a model swap at a bar line, a phrase at a loop boundary, then notes.

        A step the loop reaches too late is still stepped (a phrase boundary, a pending swap),
        but strikes no note: a stalled machine skips notes rather than playing a burst.
        """
        messages = []
        if self.pending_model is not None and step % self.info.grid.steps_per_bar == 0:
            messages = self._swap_model(step)
        if step % self.seq_len == 0 and step > 0 and self.preset.options.auto_capture:
            self._phrase_boundary(step)
        self._refine(step)
        self.settle()
        self._maybe_swap(step)
        notes = self.player.play_step(self.variation, step - self.origin, audible)
        late = self.variation.lateness(step - self.origin) if self.variation else 0.0
        if late > 0 and notes:  # as the phrase was played: this step's note comes late
            self.deferred.append((step + late, notes))
            return messages
        return messages + notes

    def _refine(self, step: int) -> None:
        """From one bar after a phrase starts, its knob moves start from the refined code
        (``model.refined_code``): the worker thread finds it before then; if it has not, it is
        found here. A fixed step, so a replay refines where the live loop did."""
        refinement = self.refinement
        if refinement is None or step < refinement.at_step:
            return
        self.refinement = None
        if refinement.model is not self.model:
            return
        code = refinement.code if refinement.code is not None else refinement.find()
        if not np.array_equal(code, self.phrase_z):
            self.phrase_z = code
            self.stale = self.stale or not self.at_rest()

    def prepare_refinement(self) -> bool:
        """Find the new phrase's refined code ahead (the daemon's worker thread; tests call
        it directly); the decode runs outside the lock. True when one was found."""
        with self.lock:
            refinement = self.refinement
        if refinement is None or refinement.code is not None:
            return False
        code = refinement.find()
        with self.lock:
            refinement.code = code  # a phrase replaced meanwhile: nobody reads it
        return True

    def _phrase_boundary(self, step: int) -> None:
        if not self.frozen:
            phrase = self.capture.take(step - self.seq_len)
            if phrase is not None:
                self.set_phrase(phrase, step)
        self.capture.forget_before(step - 2 * self.seq_len)

    def _maybe_swap(self, step: int) -> None:
        if self._pending is None:
            return
        if self.pending_from is not None:  # a new phrase: starts its loop at a bar line
            if step < self.pending_from:
                return
            self.origin = self.pending_origin
        elif self.preset.options.apply_at == "bar" and step % self.info.grid.steps_per_bar:
            return
        self.variation, self._pending, self.pending_from = self._pending, None, None

    # ------------------------------------------------------------ shutdown

    def stop(self) -> list[mido.Message]:
        """Close every note this engine opened, then All Notes Off on its channels."""
        self.deferred = []  # notes not yet played: their note-ons never go out
        messages = self.player.panic() + self.echo.panic()
        channels = {c - 1 for c in self.preset.output_channels()}
        return messages + all_notes_off(channels)

    def start_messages(self) -> list[mido.Message]:
        """All Notes Off on the output channels, so an earlier crash leaves nothing hanging."""
        return all_notes_off({c - 1 for c in self.preset.output_channels()})

    def open_notes(self) -> set[tuple[int, int]]:
        return self.player.open_notes | self.echo.open_notes


def check_same_grid(models: list) -> None:
    grids = {(m.info.grid.seq_len, m.info.grid.steps_per_beat, m.info.grid.beats_per_bar)
             for m in models}
    if len(grids) > 1:
        raise ModelSwapError("models that take turns must share one time grid (phrase length, "
                             f"steps per beat, beats per bar); got {sorted(grids)}")


def refit(phrase: Phrase, old: Vocabulary, new: Vocabulary, seq_len: int) -> Phrase:
    """A phrase tokenised in ``old`` as the player played it, fitted to ``new``'s range."""
    notes = unfold_notes(tokens_to_notes(phrase.tokens, old), phrase.octave_shift)
    if not notes:
        return Phrase(np.zeros(seq_len, dtype=np.int64), 0, phrase.velocity, phrase.groove)
    fitted, shift = fit_notes(notes, new)
    return Phrase(notes_to_tokens(fitted, new, seq_len), shift, phrase.velocity, phrase.groove)
