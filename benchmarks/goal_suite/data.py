"""Goals on data and form: CSV and JSON stated in the goal, unit and date conversions,
and answers in a stated format (comma-separated, one per line, JSON with given keys)."""

from __future__ import annotations

from .checks import any_of, items, json_value, number, text
from .suite import Goal, code, composite, llm, reference

__all__ = ["GOALS"]

_PEOPLE = "name,age,city\nAlice,34,Paris\nBob,27,Lyon\nCarla,41,Nice\nDavid,22,Paris\nEve,30,Lyon"
_ORDERS = (
    "order,product,quantity,unit_price\n1,pen,10,1.50\n2,notebook,4,3.25\n3,stapler,1,12.00\n"
    "4,pen,6,1.50"
)
_PRODUCTS = (
    '[{"name": "lamp", "price": 25, "in_stock": true}, '
    '{"name": "desk", "price": 120, "in_stock": false}, '
    '{"name": "chair", "price": 65, "in_stock": true}, '
    '{"name": "shelf", "price": 80, "in_stock": true}]'
)
_USERS = (
    '{"users": [{"id": 3, "email": "ana@example.org"}, {"id": 7, "email": "raj@example.org"}, '
    '{"id": 9, "email": "li@example.org"}]}'
)
_SALES = "city,sales\nParis,120\nLyon,80\nNice,60\nLyon,70\nNice,75"
_TEMPERATURES = "city,celsius\nOslo,-3\nCairo,31\nLima,19\nPerth,27"
_WEEK = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]

GOALS: tuple[Goal, ...] = (
    # --- parsing CSV/JSON stated in the goal ----------------------------------------
    Goal(
        id="csv-sort-by-age",
        category="parsing",
        text=f"Here is a CSV:\n{_PEOPLE}\nList the names sorted by age, youngest first, "
        "comma-separated.",
        check=items(["David", "Bob", "Eve", "Alice", "Carla"], sep=", "),
        wrong="Alice, Bob, Carla, David, Eve",
        reference=reference(
            {"people_csv": _PEOPLE},
            ["names_by_age"],
            code(
                "sort_people",
                "Sort people by age",
                "Read the CSV, sort its rows by the age column as a number, youngest first, "
                "and join the names with ', '.",
                ["people_csv"],
                ["names_by_age"],
                """
                import csv

                rows = list(csv.DictReader(open("people_csv")))
                rows.sort(key=lambda row: int(row["age"]))
                open("names_by_age", "w").write(", ".join(row["name"] for row in rows))
                """,
            ),
        ),
    ),
    Goal(
        id="csv-order-total",
        category="parsing",
        text=f"Given these orders as CSV:\n{_ORDERS}\nWhat is the total value of all orders "
        "(quantity times unit price, summed)? Answer with the number only, to two decimal "
        "places.",
        check=number(49.00, places=2, units=("$",)),
        wrong="18.25",
        reference=reference(
            {"orders_csv": _ORDERS},
            ["order_total"],
            code(
                "total",
                "Total the orders",
                "For each row multiply quantity by unit_price, add them all up, and write the "
                "sum with two decimals.",
                ["orders_csv"],
                ["order_total"],
                """
                import csv

                rows = csv.DictReader(open("orders_csv"))
                total = sum(int(r["quantity"]) * float(r["unit_price"]) for r in rows)
                open("order_total", "w").write(f"{total:.2f}")
                """,
            ),
        ),
    ),
    Goal(
        id="json-filter-products",
        category="parsing",
        text=f"This JSON lists products: {_PRODUCTS}. Which products are in stock and cost "
        "less than 70? Answer with their names, comma-separated, in the order given.",
        check=items(["lamp", "chair"], sep=", "),
        wrong="lamp, chair, shelf",
        reference=reference(
            {"products_json": _PRODUCTS},
            ["cheap_in_stock"],
            code(
                "filter_products",
                "Filter the products",
                "Parse the JSON list; keep products with in_stock true and price below 70; "
                "join their names with ', '.",
                ["products_json"],
                ["cheap_in_stock"],
                """
                import json

                products = json.load(open("products_json"))
                names = [p["name"] for p in products if p["in_stock"] and p["price"] < 70]
                open("cheap_in_stock", "w").write(", ".join(names))
                """,
            ),
        ),
    ),
    Goal(
        id="json-lookup-email",
        category="parsing",
        text=f"In this JSON, what is the email address of the user with id 7? {_USERS} "
        "Answer with the address only.",
        check=text("raj@example.org", ignore_case=True),
        wrong="li@example.org",
        reference=reference(
            {"users_json": _USERS},
            ["email"],
            code(
                "lookup",
                "Look up the user",
                "Parse the JSON and find the email of the entry in users whose id is 7.",
                ["users_json"],
                ["email"],
                """
                import json

                users = json.load(open("users_json"))["users"]
                email = next(u["email"] for u in users if u["id"] == 7)
                open("email", "w").write(email)
                """,
            ),
        ),
    ),
    Goal(
        id="csv-top-city",
        category="parsing",
        text=f"Given this CSV of sales:\n{_SALES}\nWhich city has the highest total sales? "
        "Answer with the city name only.",
        check=text("Lyon", ignore_case=True),
        wrong="Paris",
        reference=reference(
            {"sales_csv": _SALES},
            ["top_city"],
            code(
                "group",
                "Total sales by city",
                "Add up the sales column per city and write the city with the largest total.",
                ["sales_csv"],
                ["top_city"],
                """
                import csv
                from collections import Counter

                totals = Counter()
                for row in csv.DictReader(open("sales_csv")):
                    totals[row["city"]] += int(row["sales"])
                open("top_city", "w").write(totals.most_common(1)[0][0])
                """,
            ),
        ),
    ),
    Goal(
        id="csv-warm-cities",
        category="parsing",
        text=f"This CSV gives temperatures in degrees Celsius:\n{_TEMPERATURES}\nConvert each "
        "temperature to Fahrenheit, then list the cities warmer than 70 °F, comma-separated, "
        "in the order given.",
        check=items(["Cairo", "Perth"], sep=", "),
        wrong="Cairo, Lima, Perth",
        reference=reference(
            {"temperatures_csv": _TEMPERATURES},
            ["warm_cities"],
            # One composite step, broken down when planned: exercises refinement.
            composite(
                "warm",
                "Find the warm cities",
                "Convert the temperatures to Fahrenheit and keep the cities above 70 °F.",
                ["temperatures_csv"],
                ["warm_cities"],
                code(
                    "to_fahrenheit",
                    "Convert to Fahrenheit",
                    "Rewrite the CSV with a fahrenheit column computed as C * 9 / 5 + 32.",
                    ["temperatures_csv"],
                    ["fahrenheit_csv"],
                    """
                    import csv

                    rows = list(csv.DictReader(open("temperatures_csv")))
                    with open("fahrenheit_csv", "w", newline="") as out:
                        writer = csv.writer(out)
                        writer.writerow(["city", "fahrenheit"])
                        for row in rows:
                            writer.writerow([row["city"], float(row["celsius"]) * 9 / 5 + 32])
                    """,
                ),
                code(
                    "select_warm",
                    "Keep the warm cities",
                    "Keep the rows whose fahrenheit value is above 70 and join their cities "
                    "with ', ' in the order given.",
                    ["fahrenheit_csv"],
                    ["warm_cities"],
                    """
                    import csv

                    rows = csv.DictReader(open("fahrenheit_csv"))
                    warm = [row["city"] for row in rows if float(row["fahrenheit"]) > 70]
                    open("warm_cities", "w").write(", ".join(warm))
                    """,
                ),
            ),
        ),
    ),
    # --- unit and date conversions --------------------------------------------------
    Goal(
        id="conv-fahrenheit",
        category="conversion",
        text="Convert 451 degrees Fahrenheit to Celsius. Answer with the number only, rounded "
        "to one decimal place.",
        check=number(232.8, places=1, units=("°C", "C", "degrees Celsius")),
        wrong="250.6",
        reference=reference(
            {"fahrenheit": "451"},
            ["celsius"],
            code(
                "convert",
                "Convert to Celsius",
                "Compute (F - 32) * 5 / 9 and round it to one decimal place.",
                ["fahrenheit"],
                ["celsius"],
                """
                fahrenheit = float(open("fahrenheit").read())
                open("celsius", "w").write(f"{(fahrenheit - 32) * 5 / 9:.1f}")
                """,
            ),
        ),
    ),
    Goal(
        id="conv-marathon-km",
        category="conversion",
        text="A marathon is 26.2 miles. How many kilometres is that, with 1 mile = 1.609344 "
        "km? Answer with the number only, to two decimal places.",
        check=number(42.16, places=2, units=("km", "kilometres", "kilometers")),
        wrong="16.28",
        reference=reference(
            {"miles": "26.2"},
            ["kilometres"],
            code(
                "convert",
                "Convert to kilometres",
                "Multiply the miles by 1.609344 and round to two decimal places.",
                ["miles"],
                ["kilometres"],
                """
                miles = float(open("miles").read())
                open("kilometres", "w").write(f"{miles * 1.609344:.2f}")
                """,
            ),
        ),
    ),
    Goal(
        id="date-weekday",
        category="conversion",
        text="On which day of the week did 14 July 1789 fall? Answer with the English name of "
        "the day only.",
        check=text("Tuesday", ignore_case=True),
        wrong="Monday",
        reference=reference(
            {"date": "1789-07-14"},
            ["weekday"],
            code(
                "weekday",
                "Find the weekday",
                "Parse the ISO date and write the English name of its day of the week.",
                ["date"],
                ["weekday"],
                """
                import datetime

                day = datetime.date.fromisoformat(open("date").read().strip())
                names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                         "Saturday", "Sunday"]
                open("weekday", "w").write(names[day.weekday()])
                """,
            ),
        ),
    ),
    Goal(
        id="date-days-between",
        category="conversion",
        text="How many days are there from 2024-01-15 to 2024-03-01, counted as the second "
        "date minus the first? Answer with the number only.",
        check=number(46, units=("days",)),
        wrong="45",
        reference=reference(
            {"start": "2024-01-15", "end": "2024-03-01"},
            ["days"],
            code(
                "subtract",
                "Subtract the dates",
                "Parse both ISO dates and write the number of days from start to end.",
                ["start", "end"],
                ["days"],
                """
                import datetime

                start = datetime.date.fromisoformat(open("start").read().strip())
                end = datetime.date.fromisoformat(open("end").read().strip())
                open("days", "w").write(str((end - start).days))
                """,
            ),
        ),
    ),
    Goal(
        id="date-add-days",
        category="conversion",
        text="What date is 100 days after 2023-11-20? Answer in the form YYYY-MM-DD only.",
        check=text("2024-02-28"),
        wrong="2024-02-27",
        reference=reference(
            {"start": "2023-11-20"},
            ["later_date"],
            code(
                "add_days",
                "Add 100 days",
                "Parse the ISO date, add 100 days, and write the result as YYYY-MM-DD.",
                ["start"],
                ["later_date"],
                """
                import datetime

                start = datetime.date.fromisoformat(open("start").read().strip())
                later = start + datetime.timedelta(days=100)
                open("later_date", "w").write(later.isoformat())
                """,
            ),
        ),
    ),
    Goal(
        id="conv-seconds-hms",
        category="conversion",
        text="Write 9999 seconds as hours, minutes and seconds in the form H:MM:SS. Answer "
        "with that only.",
        check=any_of(text("2:46:39"), text("02:46:39")),
        wrong="2:47:39",
        reference=reference(
            {"seconds": "9999"},
            ["duration"],
            code(
                "split",
                "Split into h, m, s",
                "Divide the seconds into hours, minutes and seconds and write H:MM:SS.",
                ["seconds"],
                ["duration"],
                """
                total = int(open("seconds").read())
                hours, rest = divmod(total, 3600)
                minutes, seconds = divmod(rest, 60)
                open("duration", "w").write(f"{hours}:{minutes:02d}:{seconds:02d}")
                """,
            ),
        ),
    ),
    # --- formatted outputs ----------------------------------------------------------
    Goal(
        id="fmt-json-capital",
        category="format",
        text='Give a JSON object with the keys "country" and "capital" for Japan, and '
        "nothing else.",
        check=json_value({"country": "Japan", "capital": "Tokyo"}),
        wrong='{"country": "Japan", "capital": "Kyoto"}',
        reference=reference(
            {},
            ["capital_json"],
            llm(
                "capital",
                "Name Japan's capital as JSON",
                'Write a JSON object with the keys "country" (Japan) and "capital" (its '
                "capital city).",
                [],
                ["capital_json"],
                '{"country": "Japan", "capital": "Tokyo"}',
                acceptance="a JSON object with exactly the keys country and capital",
            ),
        ),
    ),
    Goal(
        id="fmt-primes-per-line",
        category="format",
        text="List the first 10 prime numbers, one per line, with nothing else.",
        check=items([str(p) for p in _PRIMES], sep="\n"),
        wrong="\n".join(
            str(n) for n in range(2, 100) if all(n % d for d in range(2, n))
        ),  # 25 primes: the form was lost
        reference=reference(
            {},
            ["primes"],
            code(
                "primes",
                "List the first primes",
                "Find the first 10 prime numbers and write them one per line.",
                [],
                ["primes"],
                """
                primes = []
                n = 2
                while len(primes) < 10:
                    if all(n % d for d in range(2, n)):
                        primes.append(n)
                    n += 1
                open("primes", "w").write("\\n".join(str(p) for p in primes))
                """,
            ),
        ),
    ),
    Goal(
        id="fmt-weekdays-csv",
        category="format",
        text="List the seven days of the week in English, starting with Monday, comma-separated.",
        check=items(_WEEK, sep=", ", ignore_case=True),
        wrong="\n".join(_WEEK),
        reference=reference(
            {},
            ["weekdays"],
            llm(
                "days",
                "List the weekdays",
                "List the English names of the seven days of the week from Monday to "
                "Sunday, separated by ', '.",
                [],
                ["weekdays"],
                ", ".join(_WEEK),
            ),
        ),
    ),
    Goal(
        id="fmt-json-stats",
        category="format",
        text='For the numbers 5, 1, 9, 3, 7, answer with a JSON object with the keys "min", '
        '"max" and "sum", their values as numbers.',
        check=json_value({"min": 1, "max": 9, "sum": 25}),
        wrong='{"min": 1, "max": 9, "total": 25}',
        reference=reference(
            {"numbers": "5, 1, 9, 3, 7"},
            ["stats_json"],
            code(
                "stats",
                "Compute min, max and sum",
                'Write a JSON object {"min": ..., "max": ..., "sum": ...} of the numbers.',
                ["numbers"],
                ["stats_json"],
                """
                import json

                numbers = [int(v) for v in open("numbers").read().split(",")]
                stats = {"min": min(numbers), "max": max(numbers), "sum": sum(numbers)}
                open("stats_json", "w").write(json.dumps(stats))
                """,
            ),
        ),
    ),
    Goal(
        id="fmt-json-squares",
        category="format",
        text="Give the squares of the whole numbers 1 to 6 as a JSON array of numbers.",
        check=json_value([1, 4, 9, 16, 25, 36]),
        wrong="1, 4, 9, 16, 25, 36",
        reference=reference(
            {},
            ["squares_json"],
            code(
                "squares",
                "Square 1 to 6",
                "Write the squares of 1, 2, ..., 6 as a JSON array.",
                [],
                ["squares_json"],
                """
                import json

                open("squares_json", "w").write(json.dumps([n * n for n in range(1, 7)]))
                """,
            ),
        ),
    ),
)
