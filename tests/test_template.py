"""Parsing, writing and checking cluster templates (hanami_torch/template.py)."""

import dataclasses
import pickle

import pytest

from hanami_torch.template import (
    MAX_BRICKS,
    MAX_NEURONS_PER_BRICK,
    Brick,
    Settings,
    Template,
    TemplateError,
)
from hanami_torch.templates import MNIST, TABLE, mnist

# The documentation example of spec §3.3, exactly as shown there.
DOC_EXAMPLE = """version: 1
settings:
    neuron_cooldown: 100000000000.0
    refractory_time: 1
    max_connection_distance: 1
    enable_reduction: false
bricks:
    1,1,1
        input: test_input
        number_of_neurons: 784
    2,1,1
        number_of_neurons: 400
    3,1,1
        output: test_output
        number_of_neurons: 10
"""

NO_SETTINGS = """version:1
bricks:
    1,1,1
        input: test_input
        number_of_neurons: 784
    2,1,1
        number_of_neurons: 400
    3,1,1
        output: test_output
        number_of_neurons: 10
"""


def small(settings: str = "", bricks: str | None = None) -> str:
    """A valid two-brick template with optional settings lines; bricks replaceable."""
    if bricks is None:
        bricks = "1,1,1\ninput: a\nnumber_of_neurons: 2\n2,1,1\noutput: b\nnumber_of_neurons: 1\n"
    head = "version: 1\n" + (f"settings:\n{settings}" if settings else "")
    return head + "bricks:\n" + bricks


# ------------------------------------------------------------------------------------------------
# Valid templates


def test_doc_example_round_trips_byte_exact():
    template = Template.parse(DOC_EXAMPLE)
    assert template.dumps() == DOC_EXAMPLE
    assert DOC_EXAMPLE == MNIST == mnist()


def test_doc_example_content():
    template = Template.parse(DOC_EXAMPLE)
    assert template.settings == Settings(neuron_cooldown=1e11, refractory_time=1, max_connection_distance=1)
    assert [brick.position for brick in template.bricks] == [(1, 1, 1), (2, 1, 1), (3, 1, 1)]
    assert [brick.kind for brick in template.bricks] == ["input", "hidden", "output"]
    assert [brick.line for brick in template.bricks] == [8, 11, 13]
    assert template.input_bricks[0].name == "test_input"
    assert template.output_bricks[0].name == "test_output"
    assert (template.n_inputs, template.n_outputs, template.n_neurons) == (784, 10, 1194)


def test_without_settings_block_and_compact_version():
    template = Template.parse(NO_SETTINGS)
    assert template.settings == Settings()
    assert template.settings.neuron_cooldown == 1e9
    assert template.dumps() == NO_SETTINGS.replace("version:1", "version: 1")
    assert "settings" not in template.dumps()


def test_original_spelling_is_kept():
    text = small("  neuron_cooldown: 100000000000.5\n  enable_reduction: True\n  refractory_time: 05\n")
    template = Template.parse(text)
    assert template.settings.enable_reduction is True
    assert template.settings.refractory_time == 5
    dumped = template.dumps()
    assert "    neuron_cooldown: 100000000000.5\n    enable_reduction: True\n    refractory_time: 05\n" in dumped
    assert Template.parse(dumped) == template


def test_integer_cooldown_is_accepted():
    template = Template.parse(small("neuron_cooldown: 7\n"))
    assert template.settings.neuron_cooldown == 7.0
    assert "neuron_cooldown: 7\n" in template.dumps()


def test_comments_blank_lines_tabs_and_indentation_are_ignored():
    text = (
        "# a comment line\n"
        "version: 1   # trailing comment\n"
        "\n"
        "settings:\n"
        "\tmax_connection_distance : 2\n"
        "bricks:\n"
        "1 , 1 , 1\n"
        "            input: pixels # the image\n"
        "  number_of_neurons:4\n"
        "\n"
        "\t\t2,1,1\n"
        "output: digits\n"
        "number_of_neurons: 3\n"
    )
    template = Template.parse(text)
    assert template.settings.max_connection_distance == 2
    assert [brick.line for brick in template.bricks] == [7, 11]
    assert template.bricks[0] == Brick((1, 1, 1), "input", "pixels", 4)
    assert Template.parse(template.dumps()) == template


def test_windows_line_endings():
    template = Template.parse(DOC_EXAMPLE.replace("\n", "\r\n"))
    assert template == Template.parse(DOC_EXAMPLE)
    assert template.dumps() == DOC_EXAMPLE


def test_several_input_and_output_bricks():
    text = """version: 1
bricks:
    1,1,1
        input: image
        number_of_neurons: 784
    1,1,2
        input: label_hint
        number_of_neurons: 10
    2,1,1
        number_of_neurons: 100
    3,1,1
        output: digit
        number_of_neurons: 10
    3,1,2
        output: parity
        number_of_neurons: 2
"""
    template = Template.parse(text)
    assert [brick.name for brick in template.input_bricks] == ["image", "label_hint"]
    assert [brick.name for brick in template.output_bricks] == ["digit", "parity"]
    assert (template.n_inputs, template.n_outputs) == (794, 12)
    assert template.dumps() == text


def test_table_template():
    template = Template.parse(TABLE)
    assert [brick.number_of_neurons for brick in template.bricks] == [25, 128, 128, 5]
    assert [brick.position[0] for brick in template.bricks] == [1, 2, 3, 4]
    assert template.dumps() == TABLE
    assert Template.parse(mnist(hidden=50)).bricks[1].number_of_neurons == 50


def test_built_in_code_round_trips():
    bricks = (
        Brick((0, 0, 0), "input", "x", 3),
        Brick([1, 0, 0], "hidden", None, 5),
        Brick((2, 0, 0), "output", "y", 1),
    )
    settings = Settings(neuron_cooldown=1e20, refractory_time=3, enable_reduction=True)
    template = Template(bricks, settings)
    assert template.bricks[1].position == (1, 0, 0)
    text = template.dumps()
    assert "neuron_cooldown: 100000000000000000000.0" in text
    assert Template.parse(text) == template


def test_stale_spelling_is_rewritten():
    template = Template.parse(DOC_EXAMPLE)
    changed = dataclasses.replace(template, settings=dataclasses.replace(template.settings, neuron_cooldown=1.5))
    assert "    neuron_cooldown: 1.5\n" in changed.dumps()
    assert Template.parse(changed.dumps()) == changed


def test_from_file(tmp_path):
    path = tmp_path / "mnist.tpl"
    path.write_text(DOC_EXAMPLE)
    assert Template.from_file(path) == Template.parse(DOC_EXAMPLE)
    path.write_text(DOC_EXAMPLE.replace("refractory_time: 1", "refractory_time: 0"))
    with pytest.raises(TemplateError) as info:
        Template.from_file(path)
    assert info.value.line == 4
    assert str(info.value).startswith(f"{path}: line 4: ")


def test_error_is_a_value_error_and_pickles():
    with pytest.raises(ValueError):
        Template.parse("")
    error = pickle.loads(pickle.dumps(TemplateError("bad", 3)))
    assert (error.reason, error.line, str(error)) == ("bad", 3, "line 3: bad")


def test_equality_ignores_lines_and_spelling():
    a = Template.parse(small("enable_reduction: False\n"))
    b = Template.parse("\n\n\n" + small())
    assert a == b
    assert a.bricks[0].line != b.bricks[0].line


def test_code_built_errors():
    with pytest.raises(TemplateError, match="no output brick"):
        Template((Brick((1, 1, 1), "input", "x", 1),))
    with pytest.raises(TemplateError, match="hidden brick has no name"):
        Brick((1, 1, 1), "hidden", "x", 1)
    with pytest.raises(TemplateError, match="refractory_time"):
        Settings(refractory_time=0)
    with pytest.raises(TemplateError, match="neuron_cooldown"):
        Settings(neuron_cooldown=float("nan"))


# ------------------------------------------------------------------------------------------------
# Errors: (text, expected line, key phrase)

ERRORS = {
    "empty": ("  \n# only a comment\n\n", None, "template is empty"),
    "missing version": ("bricks:\n1,1,1\n", 1, "expected 'version: 1' as the first line"),
    "wrong version": ("version: 2\nbricks:\n", 1, "unsupported template version 2"),
    "malformed version": ("version: one\n", 1, "expected 'version: 1'"),
    "unknown setting": (small("neuron_cooldown: 1.0\nfoo: 3\n"), 4, "unknown setting 'foo'; expected one of"),
    "refractory zero": (small("refractory_time: 0\n"), 3, "refractory_time"),
    "refractory float": (small("refractory_time: 1.5\n"), 3, "whole number from 1"),
    "refractory too large": (small("refractory_time: 256\n"), 3, "from 1 to 255"),
    "distance zero": (small("max_connection_distance: 0\n"), 3, "only connect to their own brick"),
    "distance negative": (small("max_connection_distance: -1\n"), 3, "max_connection_distance"),
    "cooldown zero": (small("neuron_cooldown: 0.0\n"), 3, "positive number"),
    "cooldown negative": (small("neuron_cooldown: -5\n"), 3, "positive number"),
    "cooldown exponent": (small("neuron_cooldown: 1e9\n"), 3, "exponents"),
    "cooldown bool": (small("neuron_cooldown: true\n"), 3, "neuron_cooldown"),
    "reduction number": (small("enable_reduction: 1\n"), 3, "expected true or false"),
    "setting without value": (small("enable_reduction:\n"), 3, "expected 'enable_reduction: VALUE'"),
    "empty settings": ("version: 1\nsettings:\nbricks:\n1,1,1\n", 2, "'settings:' block is empty"),
    "duplicate setting": (small("refractory_time: 1\n\nrefractory_time: 2\n"), 5, "given twice (first on line 3)"),
    "setting outside block": ("version: 1\nrefractory_time: 2\nbricks:\n", 2, "must be inside a 'settings:' block"),
    "missing bricks": ("version: 1\nsettings:\n  refractory_time: 2\n", 3, "without a 'bricks:' block"),
    "missing bricks after version": ("version: 1\n", 1, "without a 'bricks:' block"),
    "bricks forgotten": (
        "version: 1\nsettings:\n  refractory_time: 2\n  1,1,1\n",
        4,
        "did you forget the 'bricks:' line",
    ),
    "something else after version": ("version: 1\nbrick:\n", 2, "expected 'settings:' or 'bricks:' but found 'brick:'"),
    "no bricks": ("version: 1\nbricks:\n\n", 2, "'bricks:' block has no bricks"),
    "two coordinates": (small(bricks="1,1\nnumber_of_neurons: 1\n"), 3, "bad brick coordinates '1,1'"),
    "letter coordinate": (small(bricks="1,a,1\nnumber_of_neurons: 1\n"), 3, "bad brick coordinates '1,a,1'"),
    "negative coordinate": (small(bricks="-1,1,1\nnumber_of_neurons: 1\n"), 3, "cannot be negative"),
    "huge coordinate": (small(bricks="1,1,2000000\nnumber_of_neurons: 1\n"), 3, "at most 1048576"),
    "float coordinate": (small(bricks="1.5,1,1\nnumber_of_neurons: 1\n"), 3, "bad brick coordinates"),
    "entry before coordinates": (small(bricks="input: a\n1,1,1\n"), 3, "expected brick coordinates"),
    "unknown brick key": (
        small(bricks="1,1,1\ninput: a\nneurons: 3\n"),
        5,
        "unknown brick key 'neurons'; expected one of input, output, number_of_neurons",
    ),
    "setting among bricks": (small(bricks="1,1,1\nrefractory_time: 3\n"), 4, "settings belong in the 'settings:' block"),
    "input and output": (
        small(bricks="1,1,1\ninput: a\noutput: b\nnumber_of_neurons: 1\n"),
        5,
        "cannot be both input and output",
    ),
    "input twice": (small(bricks="1,1,1\ninput: a\ninput: b\n"), 5, "given twice for this brick"),
    "neurons twice": (
        small(bricks="1,1,1\nnumber_of_neurons: 1\nnumber_of_neurons: 1\n"),
        5,
        "'number_of_neurons:' is given twice",
    ),
    "missing number_of_neurons": (
        small(bricks="1,1,1\ninput: a\nnumber_of_neurons: 3\n2,1,1\noutput: b\n"),
        6,
        "brick 2,1,1 has no 'number_of_neurons'",
    ),
    "missing number_of_neurons, no entries": (small(bricks="1,1,1\n2,1,1\n"), 3, "has no 'number_of_neurons'"),
    "zero neurons": (small(bricks="1,1,1\nnumber_of_neurons: 0\n"), 4, "number_of_neurons"),
    "too many neurons": (
        small(bricks=f"1,1,1\nnumber_of_neurons: {MAX_NEURONS_PER_BRICK + 1}\n"),
        4,
        f"from 1 to {MAX_NEURONS_PER_BRICK}",
    ),
    "neuron count not a number": (small(bricks="1,1,1\nnumber_of_neurons: many\n"), 4, "number_of_neurons"),
    "too many neurons in total": (
        small(bricks="".join(f"{x},1,1\nnumber_of_neurons: {MAX_NEURONS_PER_BRICK}\n" for x in range(5))),
        11,
        "too many neurons",
    ),
    "name starts with digit": (small(bricks="1,1,1\ninput: 1abc\n"), 4, "bad brick name '1abc'"),
    "name is a number": (small(bricks="1,1,1\noutput: 12\n"), 4, "bad brick name '12'"),
    "name with dash": (small(bricks="1,1,1\ninput: a-b\n"), 4, "bad brick name 'a-b'"),
    "name too long": (small(bricks="1,1,1\ninput: " + "a" * 128 + "\n"), 4, "at most 127"),
    "name is keyword": (small(bricks="1,1,1\ninput: true\n"), 4, "keyword"),
    "name with two words": (small(bricks="1,1,1\ninput: a b\n"), 4, "expected 'input: VALUE' (one value)"),
    "duplicate position": (
        small(bricks="1,1,1\ninput: a\nnumber_of_neurons: 1\n1,1,1\noutput: b\nnumber_of_neurons: 1\n"),
        6,
        "brick position 1,1,1 is already used by the brick at line 3",
    ),
    "duplicate name": (
        small(bricks="1,1,1\ninput: a\nnumber_of_neurons: 1\n2,1,1\noutput: a\nnumber_of_neurons: 1\n"),
        6,
        "brick name 'a' is already used",
    ),
    "no input": (small(bricks="1,1,1\nnumber_of_neurons: 1\n2,1,1\noutput: b\nnumber_of_neurons: 1\n"), 2, "no input brick"),
    "no output": (small(bricks="1,1,1\ninput: a\nnumber_of_neurons: 1\n"), 2, "no output brick"),
    "second bricks line": (small(bricks="1,1,1\nbricks:\n"), 4, "second 'bricks:' line"),
    "settings after bricks": (small(bricks="1,1,1\nsettings:\n"), 4, "must come before 'bricks:'"),
    "second settings block": (small("refractory_time: 1\nsettings:\n"), 4, "second 'settings:' line"),
    "stray word": (small(bricks="1,1,1\ninput: a\nnumber_of_neurons: 1\nhello\n"), 6, "expected brick coordinates x,y,z or an entry"),
    "unexpected character": (small(bricks="1,1,1\ninput: a@b\n"), 4, "unexpected character '@'"),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_errors(case):
    text, line, phrase = ERRORS[case]
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    assert info.value.line == line, str(info.value)
    assert phrase in str(info.value)
    if line is not None:
        assert str(info.value).startswith(f"line {line}: ")


def test_too_many_bricks():
    bricks = "".join(f"{x},1,1\nnumber_of_neurons: 1\n" for x in range(MAX_BRICKS + 1))
    with pytest.raises(TemplateError) as info:
        Template.parse(small(bricks=bricks))
    assert info.value.line == 3 + 2 * MAX_BRICKS
    assert "too many bricks" in str(info.value)


def test_unknown_setting_message_matches_the_documented_one():
    with pytest.raises(TemplateError) as info:
        Template.parse(small("foo: 1\n"))
    assert str(info.value) == (
        "line 3: unknown setting 'foo'; expected one of neuron_cooldown, refractory_time, "
        "max_connection_distance, enable_reduction"
    )
