"""Goals of exact work on data the goal states: text transforms, counting, arithmetic,
sorting and filtering. Each is one step; its reference is one code task."""

from __future__ import annotations

from .checks import items, number, text
from .suite import Goal, code, reference

__all__ = ["GOALS"]

GOALS: tuple[Goal, ...] = (
    # --- text transforms ------------------------------------------------------------
    Goal(
        id="text-reverse-word",
        category="text",
        text="Reverse the letters of the word 'prefect'. Answer with the reversed word only.",
        check=text("tceferp"),
        wrong="tcefrp",
        reference=reference(
            {"word": "prefect"},
            ["reversed_word"],
            code(
                "reverse",
                "Reverse the word",
                "Write the letters of the word in reverse order.",
                ["word"],
                ["reversed_word"],
                """
                word = open("word").read().strip()
                open("reversed_word", "w").write(word[::-1])
                """,
            ),
        ),
    ),
    Goal(
        id="text-title-case",
        category="text",
        text="Convert 'the quick brown fox jumps over the lazy dog' to title case, with the "
        "first letter of every word capitalised. Answer with the converted phrase only.",
        check=text("The Quick Brown Fox Jumps Over The Lazy Dog"),
        wrong="The quick brown fox jumps over the lazy dog",
        reference=reference(
            {"phrase": "the quick brown fox jumps over the lazy dog"},
            ["title_cased"],
            code(
                "capitalise",
                "Capitalise every word",
                "Capitalise the first letter of every word of the phrase.",
                ["phrase"],
                ["title_cased"],
                """
                words = open("phrase").read().split()
                result = " ".join(w[:1].upper() + w[1:] for w in words)
                open("title_cased", "w").write(result)
                """,
            ),
        ),
    ),
    Goal(
        id="text-remove-vowels",
        category="text",
        text="Remove every vowel (a, e, i, o, u, in upper or lower case) from 'Orchestration "
        "Is Hard', keeping the spaces. Answer with what remains.",
        check=text("rchstrtn s Hrd"),
        wrong="Orchstrtn s Hrd",
        reference=reference(
            {"sentence": "Orchestration Is Hard"},
            ["without_vowels"],
            code(
                "strip_vowels",
                "Remove the vowels",
                "Drop every character that is a vowel, in either case; keep the rest in order.",
                ["sentence"],
                ["without_vowels"],
                """
                sentence = open("sentence").read().strip()
                kept = "".join(c for c in sentence if c.lower() not in "aeiou")
                open("without_vowels", "w").write(kept)
                """,
            ),
        ),
    ),
    Goal(
        id="text-caesar-shift",
        category="text",
        text="Encode 'hello world' with a Caesar cipher that shifts each letter 3 places "
        "forward in the alphabet (x becomes a), leaving spaces as they are. Answer with "
        "the encoded text only.",
        check=text("khoor zruog"),
        wrong="ebiil tloia",
        reference=reference(
            {"plain_text": "hello world"},
            ["encoded"],
            code(
                "shift",
                "Shift the letters",
                "Replace each lowercase letter by the one 3 places later, wrapping from z to a.",
                ["plain_text"],
                ["encoded"],
                """
                plain = open("plain_text").read().strip()
                shifted = "".join(
                    chr((ord(c) - 97 + 3) % 26 + 97) if c.islower() else c for c in plain
                )
                open("encoded", "w").write(shifted)
                """,
            ),
        ),
    ),
    Goal(
        id="text-snake-case",
        category="text",
        text="Convert 'Total Monthly Revenue' to snake_case (lowercase words joined by "
        "underscores). Answer with the result only.",
        check=text("total_monthly_revenue"),
        wrong="Total_Monthly_Revenue",
        reference=reference(
            {"phrase": "Total Monthly Revenue"},
            ["snake_cased"],
            code(
                "snake",
                "Make it snake_case",
                "Lowercase the words of the phrase and join them with underscores.",
                ["phrase"],
                ["snake_cased"],
                """
                words = open("phrase").read().lower().split()
                open("snake_cased", "w").write("_".join(words))
                """,
            ),
        ),
    ),
    # --- counting -------------------------------------------------------------------
    Goal(
        id="count-vowels",
        category="counting",
        text="How many vowels (a, e, i, o, u) are in the sentence 'The quick brown fox jumps "
        "over the lazy dog'? Answer with the number only.",
        check=number(11),
        wrong="10",
        reference=reference(
            {"sentence": "The quick brown fox jumps over the lazy dog"},
            ["vowel_count"],
            code(
                "count",
                "Count the vowels",
                "Count the characters of the sentence that are a, e, i, o or u, in any case.",
                ["sentence"],
                ["vowel_count"],
                """
                sentence = open("sentence").read().lower()
                open("vowel_count", "w").write(str(sum(c in "aeiou" for c in sentence)))
                """,
            ),
        ),
    ),
    Goal(
        id="count-letter",
        category="counting",
        text="How many times does the letter 'r' appear in the word 'strawberry'? Answer "
        "with the number only.",
        check=number(3),
        wrong="2",
        reference=reference(
            {"word": "strawberry"},
            ["r_count"],
            code(
                "count_r",
                "Count the letter r",
                "Count how many characters of the word are the letter r.",
                ["word"],
                ["r_count"],
                """
                word = open("word").read().strip()
                open("r_count", "w").write(str(word.count("r")))
                """,
            ),
        ),
    ),
    Goal(
        id="count-words",
        category="counting",
        text="How many words are in this sentence: 'Prefect schedules flows, retries failed "
        "tasks, and records every state change in its database.'? Answer with the number "
        "only.",
        check=number(14),
        wrong="13",
        reference=reference(
            {
                "sentence": "Prefect schedules flows, retries failed tasks, and records every "
                "state change in its database."
            },
            ["word_count"],
            code(
                "count_words",
                "Count the words",
                "Count the whitespace-separated words of the sentence.",
                ["sentence"],
                ["word_count"],
                """
                words = open("sentence").read().split()
                open("word_count", "w").write(str(len(words)))
                """,
            ),
        ),
    ),
    Goal(
        id="count-distinct",
        category="counting",
        text="How many distinct values are in the list 3, 7, 3, 9, 12, 7, 3, 15, 9, 21? "
        "Answer with the number only.",
        check=number(6),
        wrong="10",
        reference=reference(
            {"numbers": "3, 7, 3, 9, 12, 7, 3, 15, 9, 21"},
            ["distinct_count"],
            code(
                "distinct",
                "Count distinct values",
                "Count how many different numbers the list holds.",
                ["numbers"],
                ["distinct_count"],
                """
                values = {v.strip() for v in open("numbers").read().split(",")}
                open("distinct_count", "w").write(str(len(values)))
                """,
            ),
        ),
    ),
    Goal(
        id="count-whole-word",
        category="counting",
        text="How many times does the word 'the' occur as a whole word, in any "
        "capitalisation, in: 'The cat saw the dog, and then the dog saw the other cat by the "
        "theatre.'? Answer with the number only.",
        check=number(5),
        wrong="8",
        reference=reference(
            {"passage": "The cat saw the dog, and then the dog saw the other cat by the theatre."},
            ["the_count"],
            code(
                "count_the",
                "Count the word 'the'",
                "Count whole-word, case-insensitive occurrences of 'the' in the passage.",
                ["passage"],
                ["the_count"],
                """
                import re

                passage = open("passage").read()
                count = len(re.findall(r"\\bthe\\b", passage, re.IGNORECASE))
                open("the_count", "w").write(str(count))
                """,
            ),
        ),
    ),
    # --- arithmetic -----------------------------------------------------------------
    Goal(
        id="arith-sum",
        category="arithmetic",
        text="What is the sum of 4, 8, 15, 16, 23 and 42? Answer with the number only.",
        check=number(108),
        wrong="106",
        reference=reference(
            {"numbers": "4, 8, 15, 16, 23, 42"},
            ["total"],
            code(
                "add",
                "Add the numbers",
                "Add up the comma-separated numbers.",
                ["numbers"],
                ["total"],
                """
                numbers = [int(v) for v in open("numbers").read().split(",")]
                open("total", "w").write(str(sum(numbers)))
                """,
            ),
        ),
    ),
    Goal(
        id="arith-expression",
        category="arithmetic",
        text="Compute 37 * 43 - 119. Answer with the number only.",
        check=number(1472),
        wrong="1572",
        reference=reference(
            {},
            ["result"],
            code(
                "compute",
                "Compute the expression",
                "Multiply 37 by 43 and subtract 119.",
                [],
                ["result"],
                """
                open("result", "w").write(str(37 * 43 - 119))
                """,
            ),
        ),
    ),
    Goal(
        id="arith-mean",
        category="arithmetic",
        text="What is the mean of 12, 17, 23, 31 and 45? Answer with the number only, to one "
        "decimal place.",
        check=number(25.6, places=1),
        wrong="24.6",
        reference=reference(
            {"numbers": "12, 17, 23, 31, 45"},
            ["mean"],
            code(
                "average",
                "Average the numbers",
                "Compute the arithmetic mean of the numbers, rounded to one decimal place.",
                ["numbers"],
                ["mean"],
                """
                numbers = [float(v) for v in open("numbers").read().split(",")]
                open("mean", "w").write(f"{sum(numbers) / len(numbers):.1f}")
                """,
            ),
        ),
    ),
    Goal(
        id="arith-discount-tax",
        category="arithmetic",
        text="A jacket costs 80 dollars. It is discounted by 15 %, then 8 % sales tax is "
        "added to the discounted price. What is the final price in dollars? Answer with the "
        "number only, to two decimal places.",
        check=number(73.44, places=2, units=("$", "dollars", "USD")),
        wrong="74.40",
        reference=reference(
            {},
            ["final_price"],
            code(
                "price",
                "Work out the final price",
                "Take 80, subtract 15 %, add 8 % of the result; round to cents.",
                [],
                ["final_price"],
                """
                price = 80 * (1 - 0.15) * (1 + 0.08)
                open("final_price", "w").write(f"{price:.2f}")
                """,
            ),
        ),
    ),
    Goal(
        id="arith-compound-interest",
        category="arithmetic",
        text="A savings account holds 1000 dollars and earns 5 % interest a year, compounded "
        "yearly. How many dollars does it hold after 4 years? Answer with the number only, "
        "to two decimal places.",
        check=number(1215.51, places=2, units=("$", "dollars", "USD")),
        wrong="1200.00",
        reference=reference(
            {},
            ["balance"],
            code(
                "compound",
                "Compound the interest",
                "Multiply 1000 by 1.05 four times; round to cents.",
                [],
                ["balance"],
                """
                balance = 1000.0
                for _ in range(4):
                    balance *= 1.05
                open("balance", "w").write(f"{balance:.2f}")
                """,
            ),
        ),
    ),
    # --- sorting and filtering ------------------------------------------------------
    Goal(
        id="sort-names",
        category="sorting",
        text="Sort these names alphabetically: Oliver, Amelia, Noah, Isla, Jack, Emily. "
        "Answer with the sorted names, comma-separated.",
        check=items(["Amelia", "Emily", "Isla", "Jack", "Noah", "Oliver"], sep=", "),
        wrong="Oliver, Amelia, Noah, Isla, Jack, Emily",
        reference=reference(
            {"names": "Oliver, Amelia, Noah, Isla, Jack, Emily"},
            ["sorted_names"],
            code(
                "sort",
                "Sort the names",
                "Sort the comma-separated names alphabetically; join them with ', '.",
                ["names"],
                ["sorted_names"],
                """
                names = [n.strip() for n in open("names").read().split(",")]
                open("sorted_names", "w").write(", ".join(sorted(names)))
                """,
            ),
        ),
    ),
    Goal(
        id="sort-descending",
        category="sorting",
        text="Sort 42, 7, 19, 88, 3, 56, 21 from largest to smallest. Answer with the "
        "numbers, comma-separated.",
        check=items(["88", "56", "42", "21", "19", "7", "3"], sep=", "),
        wrong="3, 7, 19, 21, 42, 56, 88",
        reference=reference(
            {"numbers": "42, 7, 19, 88, 3, 56, 21"},
            ["sorted_numbers"],
            code(
                "sort",
                "Sort largest first",
                "Sort the numbers in decreasing numeric order; join them with ', '.",
                ["numbers"],
                ["sorted_numbers"],
                """
                numbers = [int(v) for v in open("numbers").read().split(",")]
                ordered = sorted(numbers, reverse=True)
                open("sorted_numbers", "w").write(", ".join(str(n) for n in ordered))
                """,
            ),
        ),
    ),
    Goal(
        id="filter-even",
        category="sorting",
        text="Keep only the even numbers of 14, 3, 27, 8, 11, 30, 5, 16, in their original "
        "order. Answer with them comma-separated.",
        check=items(["14", "8", "30", "16"], sep=", "),
        wrong="8, 14, 16, 30",
        reference=reference(
            {"numbers": "14, 3, 27, 8, 11, 30, 5, 16"},
            ["even_numbers"],
            code(
                "keep_even",
                "Keep the even numbers",
                "Keep the numbers divisible by 2, in the order given; join them with ', '.",
                ["numbers"],
                ["even_numbers"],
                """
                numbers = [int(v) for v in open("numbers").read().split(",")]
                even = [str(n) for n in numbers if n % 2 == 0]
                open("even_numbers", "w").write(", ".join(even))
                """,
            ),
        ),
    ),
    Goal(
        id="filter-primes-range",
        category="sorting",
        text="List the prime numbers between 50 and 100 in increasing order, comma-separated.",
        check=items(["53", "59", "61", "67", "71", "73", "79", "83", "89", "97"], sep=", "),
        wrong="51, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97",
        reference=reference(
            {},
            ["primes"],
            code(
                "primes",
                "Find the primes",
                "Find every prime number from 50 to 100; join them with ', '.",
                [],
                ["primes"],
                """
                primes = [n for n in range(50, 101) if all(n % d for d in range(2, n))]
                open("primes", "w").write(", ".join(str(p) for p in primes))
                """,
            ),
        ),
    ),
    Goal(
        id="sort-by-length",
        category="sorting",
        text="Sort the words banana, fig, cherry, kiwi, apple, date by length, shortest "
        "first; words of the same length keep their order from this list. Answer with the "
        "words, comma-separated.",
        check=items(["fig", "kiwi", "date", "apple", "banana", "cherry"], sep=", "),
        wrong="fig, date, kiwi, apple, banana, cherry",
        reference=reference(
            {"words": "banana, fig, cherry, kiwi, apple, date"},
            ["sorted_words"],
            code(
                "by_length",
                "Sort by length",
                "Sort the words by their length with a stable sort; join them with ', '.",
                ["words"],
                ["sorted_words"],
                """
                words = [w.strip() for w in open("words").read().split(",")]
                open("sorted_words", "w").write(", ".join(sorted(words, key=len)))
                """,
            ),
        ),
    ),
)
