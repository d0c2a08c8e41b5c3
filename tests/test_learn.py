"""`glsr-live learn`: one prompt per knob, each answer stored for the knob its prompt names."""

from __future__ import annotations

import mido

from glsr_live.live import learn_knobs


class TurningPort:
    """A port whose messages arrive in waves: each prompt lets the next wave in, as a knob
    turn goes on (and the next knob is moved) while the user reads the prompt."""

    def __init__(self, waves):
        self.waves = [list(wave) for wave in waves]
        self.pending: list[mido.Message] = []

    def arrive(self) -> None:
        if self.waves:
            self.pending += self.waves.pop(0)

    def __iter__(self):
        self.arrive()
        while self.pending:
            yield self.pending.pop(0)
            if not self.pending:
                self.arrive()

    def iter_pending(self):
        while self.pending:
            yield self.pending.pop(0)


def turn(control: int, start: int, stop: int) -> list[mido.Message]:
    return [mido.Message("control_change", control=control, value=v)
            for v in range(start, stop, 4)]


def test_the_rest_of_a_turn_raises_no_second_prompt_and_answers_land_on_their_knob():
    # wave 1: CC 74 starts turning; wave 2 (during the first prompt): the rest of the turn,
    # then CC 75 is moved; wave 3 (during the second prompt): the rest of CC 75's turn
    port = TurningPort([turn(74, 0, 40), turn(74, 40, 90) + turn(75, 0, 30), turn(75, 30, 80)])
    answers = iter(["notes", "register"])
    prompts = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        port.arrive()
        return next(answers)

    knobs = {}
    learn_knobs(port, ["notes", "register", "range"], knobs, ask)
    assert [p.split(" ")[1] for p in prompts] == ["74", "75"]
    assert {cc: knob.target for (cc, _), knob in knobs.items()} == {74: "notes", 75: "register"}
