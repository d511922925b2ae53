"""The "your turn" feedback: one printed line, the right verdict, a hint only for a known mistake, and
never an exception, so that an untouched lesson still runs top to bottom."""
import numpy as np
import pytest
import torch

from sa_course import your_turn
from sa_course.your_turn import check, lesson01, lesson02
from sa_numpy.functional import sigmoid


def one_line(capsys) -> str:
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------- the harness

def test_placeholder_says_not_tried_yet(capsys):
    assert check("task", ..., (1, 2)) is False
    assert "not tried yet" in one_line(capsys)


@pytest.mark.parametrize("yours, expected", [
    ((8, 4, 5, 5), (8, 4, 5, 5)),
    ([8, 4, 5, 5], (8, 4, 5, 5)),
    (np.array([1.0, 2.0]) + 1e-12, np.array([1.0, 2.0])),
    (torch.tensor([1.0, 2.0], dtype=torch.float64), np.array([1.0, 2.0])),
    (np.int64(3), 3),
])
def test_a_right_answer_is_correct(capsys, yours, expected):
    assert check("task", yours, expected, right="Well done.") is True
    assert one_line(capsys) == "Correct (task). Well done."


def test_a_known_mistake_gets_its_own_lesson_and_only_when_it_matches(capsys):
    mistakes = [("lesson A", (1, 2)), ("lesson B", lambda: np.zeros(2))]
    assert check("task", (1, 2), (2, 1), mistakes) is False
    assert one_line(capsys) == "Not yet (task): lesson A"
    assert check("task", np.zeros(2), np.ones(2), mistakes) is False
    assert one_line(capsys) == "Not yet (task): lesson B"
    check("task", (3, 3), (2, 1), mistakes)
    line = one_line(capsys)
    assert "lesson" not in line and "yours is (3, 3)" in line


def test_the_generic_message_never_shows_the_answer(capsys):
    check("task", np.full(3, 7.0), np.array([1.5, 2.5, 3.5]))
    line = one_line(capsys)
    assert "values differ" in line and "1.5" not in line and "2.5" not in line


@pytest.mark.parametrize("yours, says", [
    (np.zeros(4), "shape (4,)"),
    (np.array(["a", "b", "c"]), "dtype"),
    (np.array([np.nan, 1.0, 2.0]), "nan"),
    ([[1, 2], [3]], "expected an array"),
    (None, "expected an array"),
])
def test_a_wrong_array_is_described_by_what_differs(capsys, yours, says):
    assert check("task", yours, np.arange(3.0)) is False
    assert says in one_line(capsys)


def test_a_wrong_kind_of_answer_for_a_shape_is_named(capsys):
    check("task", 8, (8, 4))
    assert "expected a tuple of 2 numbers" in one_line(capsys)
    check("task", (8, 4, 1), (8, 4))
    assert "3 entries, expected 2" in one_line(capsys)


class Awkward:
    """An object whose comparison, conversion and repr all fail."""
    def __eq__(self, other):
        raise RuntimeError("no comparison")
    __hash__ = None
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array")
    def __repr__(self):
        raise RuntimeError("no repr")


@pytest.mark.parametrize("yours", [Awkward(), "text", {"a": 1}, torch.ones(2, requires_grad=True), float("nan")])
@pytest.mark.parametrize("expected", [(8, 4), 3, np.arange(2.0)])
def test_check_never_raises(capsys, yours, expected):
    def broken():
        raise ValueError("this mistake cannot be computed")
    assert check("task", yours, expected, [("hint", broken), ("other", (0, 0))]) is False
    assert one_line(capsys).startswith("Not yet (task): ")


def test_lesson_modules_are_reachable_as_attributes():
    assert your_turn.lesson01 is lesson01 and your_turn.lesson02 is lesson02
    with pytest.raises(AttributeError):
        your_turn.lesson_unknown


# ---------------------------------------------------------------- lesson 01

def test_lesson01_half_shape(capsys):
    assert lesson01.half_shape((8, 4, 5, 5)) is None
    assert one_line(capsys).startswith("Correct")
    x = np.zeros((2, 32, 5, 5))
    assert x.reshape(8, 8, 5, 5)[:, :4].shape == lesson01.HALF_SHAPE


def test_lesson01_channel_destination_agrees_with_the_reshape(capsys):
    b_, c_, g_ = 3, 16, 2
    x = (100 * np.arange(b_)[:, None] + np.arange(c_)[None, :]).reshape(b_, c_, 1, 1)
    halves = x.reshape(b_ * g_, c_ // g_, 1, 1)
    k = c_ // (2 * g_)
    i, row, kk = lesson01.DESTINATION
    assert halves[row, i * k + kk, 0, 0] == 100 * 1 + 13
    lesson01.channel_destination(list(lesson01.DESTINATION))
    assert one_line(capsys).startswith("Correct")


@pytest.mark.parametrize("task, table", [
    (lesson01.half_shape, lesson01.HALF_SHAPE_MISTAKES),
    (lesson01.channel_destination, lesson01.DESTINATION_MISTAKES),
    (lesson02.pooled_shape, lesson02.POOLED_SHAPE_MISTAKES),
])
def test_each_listed_shape_mistake_gets_its_lesson(capsys, task, table):
    for lesson, value in table:
        task(value)
        assert one_line(capsys).endswith(lesson)
    task(...)
    assert "not tried yet" in one_line(capsys)
    task((9, 9, 9, 9))
    assert "try once more" in one_line(capsys)


@pytest.fixture
def overlap():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, 3)), rng.normal(size=(2, 4))


def test_lesson01_overlap_gradient_matches_autograd(capsys, overlap):
    da, db = overlap
    v = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    (torch.sum(v[:, :3] * torch.from_numpy(da)) + torch.sum(v[:, 1:] * torch.from_numpy(db))).backward()
    lesson01.overlap_gradient(v.grad.numpy(), da, db)
    assert one_line(capsys).startswith("Correct")


def learner_overlap(da, db, how):
    dv = np.zeros((2, 5))
    dv[:, :3] += da
    if how == "assigns":
        dv[:, 1:] = db
    elif how == "forgets b":
        pass
    elif how == "starts afresh":
        dv = np.zeros((2, 5))
        dv[:, 1:] += db
    elif how == "shifts":
        dv[:, :4] += db
    elif how == "concatenates":
        dv = np.concatenate([da, db], axis=1)
    elif how == "subtracts":
        dv[:, 1:] -= db
    elif how == "adds ones":
        dv[:, 1:] += 1
    return dv


@pytest.mark.parametrize("how, says", [
    ("assigns", "do not assign"), ("forgets b", "a's term alone"), ("starts afresh", "b's term alone"),
    ("shifts", "starts at column 1"), ("concatenates", "overlap adds up"), ("subtracts", "not - db"),
    ("adds ones", "multiplies it by b's upstream gradient db"),
])
def test_lesson01_overlap_mistakes_get_their_lesson(capsys, overlap, how, says):
    da, db = overlap
    lesson01.overlap_gradient(learner_overlap(da, db, how), da, db)
    assert says in one_line(capsys)


def test_lesson01_overlap_placeholder_and_other_wrong(capsys, overlap):
    da, db = overlap
    lesson01.overlap_gradient(..., da, db)
    assert "not tried yet" in one_line(capsys)
    lesson01.overlap_gradient(np.ones((2, 5)), da, db)
    assert "values differ" in one_line(capsys)


# ---------------------------------------------------------------- lesson 02

def test_lesson02_pooled_shape_is_the_official_layers(capsys):
    x = torch.zeros(2, 64, 7, 7)
    x_0, _ = x.reshape(2 * 4, -1, 7, 7).chunk(2, dim=1)
    lesson02.pooled_shape(tuple(torch.nn.AdaptiveAvgPool2d(1)(x_0).shape))
    assert one_line(capsys).startswith("Correct")


@pytest.fixture
def gate_inputs():
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(6, 4, 5, 5)) + rng.normal(size=(6, 4, 1, 1))
    return x0, rng.normal(size=4), rng.normal(size=4)


def loop_z(x0, cweight, cbias):
    n_, k_, h_, w_ = x0.shape
    z = np.empty((n_, k_))
    for n in range(n_):
        for k in range(k_):
            z[n, k] = cweight[k] * sum(x0[n, k, h, w] for h in range(h_) for w in range(w_)) / (h_ * w_) + cbias[k]
    return z


def test_lesson02_pre_activation_accepts_the_loop_value(capsys, gate_inputs):
    lesson02.pre_activation(loop_z(*gate_inputs), *gate_inputs)
    assert one_line(capsys).startswith("Correct")


@pytest.mark.parametrize("wrong, says", [
    (lambda x0, w, b: w * x0.sum(axis=(2, 3)) + b, "divide by P"),
    (lambda x0, w, b: w * x0.mean(axis=(0, 2, 3)) + b, "over the rows too"),
    (lambda x0, w, b: w * x0.mean(axis=(2, 3)), "cbias is missing"),
    (lambda x0, w, b: b * x0.mean(axis=(2, 3)) + w, "swapped"),
    (lambda x0, w, b: sigmoid(w * x0.mean(axis=(2, 3)) + b), "before the sigmoid"),
    (lambda x0, w, b: w[:, None, None] * x0.mean(axis=(2, 3), keepdims=True) + b[:, None, None], "keepdims"),
])
def test_lesson02_pre_activation_mistakes_get_their_lesson(capsys, gate_inputs, wrong, says):
    lesson02.pre_activation(wrong(*gate_inputs), *gate_inputs)
    assert says in one_line(capsys)


def test_lesson02_pre_activation_placeholder_and_other_wrong(capsys, gate_inputs):
    lesson02.pre_activation(..., *gate_inputs)
    assert "not tried yet" in one_line(capsys)
    lesson02.pre_activation(np.zeros((6, 4)), *gate_inputs)
    assert "values differ" in one_line(capsys)


@pytest.fixture
def sigmoid_inputs():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 4))
    return z, rng.normal(size=(6, 4)), sigmoid(z)


def test_lesson02_sigmoid_backward_matches_autograd(capsys, sigmoid_inputs):
    z, da, gate = sigmoid_inputs
    zt = torch.from_numpy(z).requires_grad_()
    torch.sigmoid(zt).backward(torch.from_numpy(da))
    lesson02.sigmoid_backward(zt.grad.numpy(), da, gate)
    assert one_line(capsys).startswith("Correct")


@pytest.mark.parametrize("wrong, says", [
    (lambda z, da, a: da, "derivative is missing"),
    (lambda z, da, a: da * a, "the sigmoid itself"),
    (lambda z, da, a: da * (1 - a), "one factor"),
    (lambda z, da, a: da * z * (1 - z), "not z itself"),
    (lambda z, da, a: a * (1 - a), "upstream gradient da"),                          # the upstream gradient forgotten
    (lambda z, da, a: da * sigmoid(a) * (1 - sigmoid(a)), "applying sigmoid to it again"),   # sigmoid twice
    (lambda z, da, a: -da * a * (1 - a), "the sign"),
])
def test_lesson02_sigmoid_backward_mistakes_get_their_lesson(capsys, sigmoid_inputs, wrong, says):
    z, da, gate = sigmoid_inputs
    lesson02.sigmoid_backward(wrong(z, da, gate), da, gate)
    assert says in one_line(capsys)


def test_lesson02_sigmoid_backward_placeholder_and_other_wrong(capsys, sigmoid_inputs):
    _, da, gate = sigmoid_inputs
    lesson02.sigmoid_backward(..., da, gate)
    assert "not tried yet" in one_line(capsys)
    lesson02.sigmoid_backward(2 * da, da, gate)
    assert "values differ" in one_line(capsys)


@pytest.mark.parametrize("yours", [None, "text", [[1, 2], [3]], Awkward(), np.zeros((1, 1, 1, 1, 1))])
def test_no_lesson_task_raises_on_an_odd_answer(capsys, yours, overlap, gate_inputs, sigmoid_inputs):
    (da, db), (_, da_s, gate) = overlap, sigmoid_inputs
    tasks = [lambda v: lesson01.half_shape(v), lambda v: lesson01.channel_destination(v),
             lambda v: lesson01.overlap_gradient(v, da, db), lambda v: lesson02.pooled_shape(v),
             lambda v: lesson02.pre_activation(v, *gate_inputs), lambda v: lesson02.sigmoid_backward(v, da_s, gate)]
    for task in tasks:
        task(yours)
        assert one_line(capsys).startswith("Not yet")
