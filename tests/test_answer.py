from jupyter_autoresearch.protocol._answer import parse_answer


def test_hypothesis_and_last_python_block() -> None:
    text = (
        "Thinking first.\n```python\nold = 1\n```\n"
        "Hypothesis: an exact MILP beats the greedy prefix.\n\n"
        "```python\nimport cvxpy as cp\nprint('METRIC x=1')\n```\n"
        "```text\nnot code\n```\nIdea: try integer cents\n"
    )
    answer = parse_answer(text)
    assert answer.hypothesis == "an exact MILP beats the greedy prefix."
    assert answer.code == "import cvxpy as cp\nprint('METRIC x=1')\n"
    assert answer.ideas == ("try integer cents",)
    assert answer.problem is None and answer.done is None


def test_block_without_language_tag_is_accepted() -> None:
    assert parse_answer("Hypothesis: h\n```\nx = 1\n```").code == "x = 1\n"


def test_done_line() -> None:
    answer = parse_answer("The optimum is proven.\nDONE: exact optimum reached")
    assert answer.done == "exact optimum reached" and answer.code == ""


def test_code_wins_over_done() -> None:
    answer = parse_answer("DONE: maybe\n```python\nx = 2\n```")
    assert answer.done is None and answer.code == "x = 2\n"


def test_malformed_answers_carry_a_problem() -> None:
    assert "no complete" in str(parse_answer("```python\nx = 1").problem)
    assert "neither" in str(parse_answer("I would change the sort order.").problem)
    assert "empty" in str(parse_answer("```python\n\n```").problem)


def test_code_that_does_not_compile_is_a_problem() -> None:
    answer = parse_answer("Hypothesis: h\n```python\nfor x in:\n    pass\n```")
    assert answer.code and answer.problem == "SyntaxError: invalid syntax (line 1: for x in:)"
