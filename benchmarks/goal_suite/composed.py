"""Goals of several steps (independent branches, then a step that combines them), and
goals whose literal input is too long or too fiddly to work through by eye, so that a
program must read it."""

from __future__ import annotations

from .checks import items, json_value, number, text
from .suite import Goal, code, llm, reference

__all__ = ["GOALS"]

_LOG = """\
2024-05-01 10:00:01 INFO  service started
2024-05-01 10:00:05 WARN  disk at 81%
2024-05-01 10:01:12 ERROR connection refused by db-1
2024-05-01 10:01:13 INFO  retrying after ERROR from db-1
2024-05-01 10:01:20 ERROR connection refused by db-1
2024-05-01 10:02:00 INFO  connected to db-2
2024-05-01 10:05:42 ERROR timeout calling billing
2024-05-01 10:06:00 DEBUG cache warm
2024-05-01 10:07:30 WARN  slow response from billing
2024-05-01 10:09:10 ERROR timeout calling billing
2024-05-01 10:10:00 INFO  health check ok"""
_PARAGRAPH = (
    "Data flows into the pipeline. The pipeline cleans the data, and the cleaned data flows "
    "out. Data, data, data: the pipeline never sleeps."
)
_GRID = "4 9 2 11\n3 5 7 6\n8 1 6 10"
_MEDIAN_NUMBERS = "31, 7, 45, 12, 88, 23, 56, 19, 64, 3, 72, 40"

GOALS: tuple[Goal, ...] = (
    # --- several tasks: parallel branches and a combining step ----------------------
    Goal(
        id="multi-count-product",
        category="multistep",
        text="Count the vowels (a, e, i, o, u) in 'orchestration' and the consonants in "
        "'workflow', then multiply the two counts. Answer with the product only.",
        check=number(30),
        wrong="35",
        reference=reference(
            {"first_word": "orchestration", "second_word": "workflow"},
            ["product"],
            code(
                "vowels",
                "Count vowels",
                "Count the letters a, e, i, o, u in the first word.",
                ["first_word"],
                ["vowel_count"],
                """
                word = open("first_word").read().strip().lower()
                open("vowel_count", "w").write(str(sum(c in "aeiou" for c in word)))
                """,
            ),
            code(
                "consonants",
                "Count consonants",
                "Count the letters of the second word that are not a, e, i, o, u.",
                ["second_word"],
                ["consonant_count"],
                """
                word = open("second_word").read().strip().lower()
                count = sum(c.isalpha() and c not in "aeiou" for c in word)
                open("consonant_count", "w").write(str(count))
                """,
            ),
            code(
                "multiply",
                "Multiply the counts",
                "Multiply the vowel count by the consonant count.",
                ["vowel_count", "consonant_count"],
                ["product"],
                """
                a = int(open("vowel_count").read())
                b = int(open("consonant_count").read())
                open("product", "w").write(str(a * b))
                """,
            ),
        ),
    ),
    Goal(
        id="multi-capitals",
        category="multistep",
        text="Find the capital of France and the capital of Italy, then answer with the two "
        "capitals in alphabetical order, joined by ' and '.",
        check=text("Paris and Rome"),
        wrong="Rome and Paris",
        reference=reference(
            {},
            ["capitals"],
            llm(
                "france",
                "Capital of France",
                "Name the capital city of France, the name only.",
                [],
                ["france_capital"],
                "Paris",
                acceptance="one city name",
            ),
            llm(
                "italy",
                "Capital of Italy",
                "Name the capital city of Italy, the name only.",
                [],
                ["italy_capital"],
                "Rome",
                acceptance="one city name",
            ),
            code(
                "join",
                "Order and join",
                "Sort the two city names alphabetically and join them with ' and '.",
                ["france_capital", "italy_capital"],
                ["capitals"],
                """
                cities = [open(n).read().strip() for n in ("france_capital", "italy_capital")]
                open("capitals", "w").write(" and ".join(sorted(cities)))
                """,
            ),
        ),
    ),
    Goal(
        id="multi-team-average",
        category="multistep",
        text="Team A scored 12, 15, 9 and 20 points; team B scored 14, 11, 18 and 16. Work out "
        'each team\'s average, then answer with a JSON object with the keys "team" ("A" or '
        '"B", the team with the higher average) and "average" (that team\'s average).',
        check=json_value({"team": "B", "average": 14.75}),
        wrong='{"team": "A", "average": 14.0}',
        reference=reference(
            {"team_a_scores": "12, 15, 9, 20", "team_b_scores": "14, 11, 18, 16"},
            ["winner_json"],
            code(
                "average_a",
                "Average team A",
                "Compute the mean of team A's comma-separated scores.",
                ["team_a_scores"],
                ["team_a_average"],
                """
                scores = [float(v) for v in open("team_a_scores").read().split(",")]
                open("team_a_average", "w").write(str(sum(scores) / len(scores)))
                """,
            ),
            code(
                "average_b",
                "Average team B",
                "Compute the mean of team B's comma-separated scores.",
                ["team_b_scores"],
                ["team_b_average"],
                """
                scores = [float(v) for v in open("team_b_scores").read().split(",")]
                open("team_b_average", "w").write(str(sum(scores) / len(scores)))
                """,
            ),
            code(
                "compare",
                "Pick the higher average",
                'Write {"team": "A" or "B", "average": its average} for the higher average.',
                ["team_a_average", "team_b_average"],
                ["winner_json"],
                """
                import json

                a = float(open("team_a_average").read())
                b = float(open("team_b_average").read())
                winner = {"team": "A", "average": a} if a > b else {"team": "B", "average": b}
                open("winner_json", "w").write(json.dumps(winner))
                """,
            ),
        ),
    ),
    Goal(
        id="multi-longest-words",
        category="multistep",
        text="Find the longest word of 'Prefect runs flows on schedules' and the longest word "
        "of 'Agents plan small tasks carefully', then answer with the two words joined by a "
        "hyphen, the first sentence's word first.",
        check=text("schedules-carefully", ignore_case=True),
        wrong="carefully-schedules",
        reference=reference(
            {
                "first_sentence": "Prefect runs flows on schedules",
                "second_sentence": "Agents plan small tasks carefully",
            },
            ["joined_words"],
            code(
                "longest_first",
                "Longest word of sentence 1",
                "Find the longest word of the first sentence.",
                ["first_sentence"],
                ["first_longest"],
                """
                words = open("first_sentence").read().split()
                open("first_longest", "w").write(max(words, key=len))
                """,
            ),
            code(
                "longest_second",
                "Longest word of sentence 2",
                "Find the longest word of the second sentence.",
                ["second_sentence"],
                ["second_longest"],
                """
                words = open("second_sentence").read().split()
                open("second_longest", "w").write(max(words, key=len))
                """,
            ),
            code(
                "hyphenate",
                "Join with a hyphen",
                "Join the first sentence's longest word and the second's with '-'.",
                ["first_longest", "second_longest"],
                ["joined_words"],
                """
                first = open("first_longest").read().strip()
                second = open("second_longest").read().strip()
                open("joined_words", "w").write(f"{first}-{second}")
                """,
            ),
        ),
    ),
    Goal(
        id="multi-three-parts",
        category="multistep",
        text="Compute the sum of the whole numbers from 1 to 100, the number of letters in "
        "the word 'goalflow', and 2 to the power 10, then add the three results. Answer with "
        "the total only.",
        check=number(6082),
        wrong="6072",
        reference=reference(
            {"word": "goalflow"},
            ["grand_total"],
            code(
                "gauss",
                "Sum 1 to 100",
                "Add up the whole numbers from 1 to 100.",
                [],
                ["sum_to_100"],
                """
                open("sum_to_100", "w").write(str(sum(range(1, 101))))
                """,
            ),
            code(
                "letters",
                "Count the letters",
                "Count the letters of the word.",
                ["word"],
                ["letter_count"],
                """
                word = open("word").read().strip()
                open("letter_count", "w").write(str(sum(c.isalpha() for c in word)))
                """,
            ),
            code(
                "power",
                "Two to the tenth",
                "Compute 2 raised to the power 10.",
                [],
                ["power_of_two"],
                """
                open("power_of_two", "w").write(str(2**10))
                """,
            ),
            code(
                "add",
                "Add the three results",
                "Add the three integers together.",
                ["sum_to_100", "letter_count", "power_of_two"],
                ["grand_total"],
                """
                names = ("sum_to_100", "letter_count", "power_of_two")
                total = sum(int(open(n).read()) for n in names)
                open("grand_total", "w").write(str(total))
                """,
            ),
        ),
    ),
    Goal(
        id="multi-translations",
        category="multistep",
        text="Give the French word and the Spanish word for 'cat', in lowercase, then answer "
        "with both joined by ' / ', French first.",
        check=items(["chat", "gato"], sep=" / ", ignore_case=True),
        wrong="gato / chat",
        reference=reference(
            {"english_word": "cat"},
            ["translations"],
            llm(
                "french",
                "Translate into French",
                "Give the French word for the English word, in lowercase, without article.",
                ["english_word"],
                ["french_word"],
                "chat",
            ),
            llm(
                "spanish",
                "Translate into Spanish",
                "Give the Spanish word for the English word, in lowercase, without article.",
                ["english_word"],
                ["spanish_word"],
                "gato",
            ),
            code(
                "combine",
                "Join the translations",
                "Join the French word and the Spanish word with ' / ', French first.",
                ["french_word", "spanish_word"],
                ["translations"],
                """
                french = open("french_word").read().strip()
                spanish = open("spanish_word").read().strip()
                open("translations", "w").write(f"{french} / {spanish}")
                """,
            ),
        ),
    ),
    # --- a code task reading a literal input ----------------------------------------
    Goal(
        id="code-log-errors",
        category="code_input",
        text=f"How many lines of this log have the level ERROR?\n{_LOG}\nAnswer with the "
        "number only.",
        check=number(4),
        wrong="5",
        reference=reference(
            {"log": _LOG},
            ["error_lines"],
            code(
                "count_errors",
                "Count ERROR lines",
                "Count the log lines whose third whitespace-separated field is ERROR.",
                ["log"],
                ["error_lines"],
                """
                lines = open("log").read().splitlines()
                count = sum(1 for line in lines if line.split()[2:3] == ["ERROR"])
                open("error_lines", "w").write(str(count))
                """,
            ),
        ),
    ),
    Goal(
        id="code-most-common-word",
        category="code_input",
        text=f"Which word occurs most often in this text, ignoring case and punctuation? "
        f"'{_PARAGRAPH}' Answer with the word in lowercase.",
        check=text("data", ignore_case=True),
        wrong="the",
        reference=reference(
            {"paragraph": _PARAGRAPH},
            ["most_common"],
            code(
                "frequency",
                "Find the most common word",
                "Lowercase the text, split it into words of letters only, and write the word "
                "with the highest count.",
                ["paragraph"],
                ["most_common"],
                """
                import re
                from collections import Counter

                words = re.findall(r"[a-z]+", open("paragraph").read().lower())
                open("most_common", "w").write(Counter(words).most_common(1)[0][0])
                """,
            ),
        ),
    ),
    Goal(
        id="code-digit-sum",
        category="code_input",
        text="What is the sum of the digits of 98765432123456789? Answer with the number only.",
        check=number(89),
        wrong="90",
        reference=reference(
            {"number": "98765432123456789"},
            ["digit_sum"],
            code(
                "digits",
                "Add the digits",
                "Add up the decimal digits of the number.",
                ["number"],
                ["digit_sum"],
                """
                digits = open("number").read().strip()
                open("digit_sum", "w").write(str(sum(int(d) for d in digits)))
                """,
            ),
        ),
    ),
    Goal(
        id="code-median",
        category="code_input",
        text=f"What is the median of these numbers: {_MEDIAN_NUMBERS}? Answer with the number "
        "only.",
        check=number(35.5),
        wrong="40",
        reference=reference(
            {"numbers": _MEDIAN_NUMBERS},
            ["median"],
            code(
                "median",
                "Find the median",
                "Sort the numbers and take the middle value, or the mean of the two middle "
                "values when there is an even count.",
                ["numbers"],
                ["median"],
                """
                import statistics

                numbers = [float(v) for v in open("numbers").read().split(",")]
                median = statistics.median(numbers)
                open("median", "w").write(f"{median:g}")
                """,
            ),
        ),
    ),
    Goal(
        id="code-column-sums",
        category="code_input",
        text="For the grid below (one row per line, numbers separated by spaces), give the "
        f"sum of each column, left to right, comma-separated.\n{_GRID}",
        check=items(["15", "15", "15", "27"], sep=", "),
        wrong="26, 21, 25",  # the row sums
        reference=reference(
            {"grid": _GRID},
            ["column_sums"],
            code(
                "columns",
                "Sum the columns",
                "Parse the rows of space-separated integers and add up each column.",
                ["grid"],
                ["column_sums"],
                """
                rows = [[int(v) for v in line.split()] for line in open("grid") if line.strip()]
                sums = [sum(column) for column in zip(*rows)]
                open("column_sums", "w").write(", ".join(str(s) for s in sums))
                """,
            ),
        ),
    ),
    Goal(
        id="code-word-lengths",
        category="code_input",
        text="Give the length of each word of the sentence 'Small models need clear, exact "
        "steps.', counting letters only (no punctuation), in order, comma-separated.",
        check=items(["5", "6", "4", "5", "5", "5"], sep=", "),
        wrong="5, 6, 4, 6, 5, 6",
        reference=reference(
            {"sentence": "Small models need clear, exact steps."},
            ["word_lengths"],
            code(
                "lengths",
                "Measure the words",
                "For each whitespace-separated word, count its letters only.",
                ["sentence"],
                ["word_lengths"],
                """
                words = open("sentence").read().split()
                lengths = [sum(c.isalpha() for c in w) for w in words]
                open("word_lengths", "w").write(", ".join(str(n) for n in lengths))
                """,
            ),
        ),
    ),
)
