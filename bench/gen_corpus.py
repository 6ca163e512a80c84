"""Reproducible synthetic corpus for the build benchmark.

`python bench/gen_corpus.py --messages 50000 --out bench/out/corpus50k` writes a workspace with
`corpus.jsonl` (ChatGPT-style conversations, one or two exchanges each) and `truth.json` (the
planted duplicate pairs). Themes are skewed (Zipf over 30 topics, so a few topics dominate); about
`--dup-rate` of the conversations get a planted near-duplicate copy (typos, case, punctuation,
spacing, synonyms: the kind of re-asked question and re-pasted answer a real export holds) and a
smaller share an exact copy. Everything comes from one seeded RNG: same arguments, same corpus.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rhizome.records import stable_id  # noqa: E402
from rhizome.workspace import Workspace, write_json, write_jsonl  # noqa: E402

TOPICS = {name: [p.strip() for p in phrases.split(",")] for name, phrases in {
    "gardening": "compost, soil, mulch, seedlings, tomato plants, raised beds, pruning shears, aphids, watering schedule",
    "baking": "sourdough starter, flour, hydration, proofing basket, oven spring, gluten structure, crumb, crust",
    "python": "list comprehensions, decorators, virtual environments, type hints, pandas dataframes, pytest fixtures",
    "running": "marathon training, tempo runs, interval sessions, heart rate zones, running shoes, tapering",
    "finance": "index funds, emergency fund, compound interest, budgeting spreadsheet, retirement account",
    "photography": "aperture, shutter speed, exposure triangle, prime lens, golden hour, raw files, histogram",
    "chess": "opening repertoire, endgame technique, pawn structure, tactics puzzles, rook endings",
    "linux": "shell scripts, file permissions, systemd services, cron jobs, package manager, kernel modules",
    "coffee": "espresso, grind size, pour over, extraction time, burr grinder, water temperature, roast",
    "guitar": "chord progressions, fingerpicking, barre chords, capo, alternate tuning, fretboard, scales",
    "travel": "itinerary, train passes, hostel booking, packing list, jet lag, travel insurance, visas",
    "sleep": "circadian rhythm, sleep hygiene, caffeine cutoff, melatonin, bedtime routine, naps",
    "databases": "sql joins, indexes, query planner, transactions, normalization, postgres, replication",
    "parenting": "toddler tantrums, bedtime stories, screen time, sibling rivalry, daycare, routines",
    "cooking": "cast iron skillet, knife skills, braising, stock, reduction, seasoning, mise en place",
    "writing": "first draft, narrative voice, plot outline, character arcs, editing passes, dialogue",
    "astronomy": "telescope, eyepiece, light pollution, nebula, star charts, planetary conjunction",
    "cycling": "bike fit, cadence, gear ratios, chain lubrication, saddle height, climbing intervals",
    "investing": "stock valuation, dividend yield, bond ladder, portfolio rebalancing, expense ratio",
    "language": "spanish vocabulary, flashcards, verb conjugation, listening practice, spaced repetition",
    "machine learning": "gradient descent, learning rate, overfitting, validation loss, embeddings, transformers",
    "home repair": "drywall patch, leaky faucet, caulking, grout, stud finder, circuit breaker",
    "meditation": "breath awareness, body scan, mindfulness practice, wandering mind, silent retreat",
    "aquarium": "nitrogen cycle, water changes, ammonia levels, aquatic plants, filter media",
    "climbing": "bouldering grades, finger strength, belay device, crimps, overhangs, footwork",
    "beekeeping": "hive inspection, queen cells, varroa mites, honey supers, swarm prevention",
    "woodworking": "dovetail joints, hand plane, wood glue, grain direction, table saw, sharpening",
    "music theory": "circle of fifths, modes, cadences, voice leading, intervals, harmonic minor",
    "nutrition": "protein intake, fiber, meal prep, micronutrients, hydration, whole grains",
    "knitting": "cast on, purl stitch, yarn weight, gauge swatch, cable pattern, blocking",
}.items()}
OPENERS = ["I", "We", "My partner and I", "A friend", "Last week I", "This morning I", "Yesterday my team"]
QUESTIONS = [
    "How do I get better at {a} when I keep struggling with {b}?",
    "What is the best way to handle {a} if {b} is getting in the way?",
    "Can you explain how {a} affects {b} for a beginner?",
    "{o} tried to improve {a} but {b} still goes wrong. What should I change?",
    "Is it worth spending money on {a}, or should I focus on {b} first?",
    "Why does my {a} fail whenever I change the {b}?",
    "Could you give me a weekly plan for {a} that also covers {b}?",
    "What mistakes do people make with {a} and how does {b} fit in?",
]
SENTENCES = [
    "Start by looking at {a} separately from {b}, because mixing them hides the real cause.",
    "Most people find that {a} improves once they track it for {n} weeks.",
    "If {b} keeps going wrong, reduce the change to one variable at a time.",
    "A simple rule is to spend about {n} minutes on {a} before you touch {b}.",
    "Write down what you changed about {a} so you can compare results later.",
    "The trade-off is that {a} takes patience while {b} gives quicker feedback.",
    "Experienced people usually check {b} first and only then adjust {a}.",
    "Avoid buying new gear for {a} until the basics of {b} feel routine.",
    "In my experience {a} matters more than {b} for the first {n} months.",
    "Try a small experiment: change {a} on day {n} and keep {b} the same.",
    "When {b} fails, look for a pattern in the last {n} attempts rather than the latest one.",
    "There is no single correct answer, but {a} with steady {b} works for most.",
    "Keep a short checklist for {a}, and review it after every session of {b}.",
    "The common advice about {b} is too strict; {a} is more forgiving than it sounds.",
    "{name} from {city} swears by doing {a} early in the morning, and it seems to help with {b}.",
    "Books on {a} rarely mention {b}, yet beginners trip over it constantly.",
    "Set yourself a target of {n} sessions before judging whether {a} is working.",
    "Cheap tools are fine for {a}; spend the money on good {b} instead.",
    "Think of {b} as the foundation and {a} as the thing you build on top of it.",
    "The biggest jump in results usually comes from fixing {b}, not from more {a}.",
    "Film or photograph your {a} so you can spot what goes wrong with {b}.",
    "Ask someone who has done {a} for years to watch you once; they will see the {b} issue quickly.",
    "If you only have {n} minutes a day, put all of it into {a}.",
    "Your notes from {city} show that {b} went better when you rested the day before.",
    "Measure {a} the same way every time, otherwise the numbers on {b} mean nothing.",
    "Rushing {a} is the usual reason {b} feels inconsistent.",
    "A forum thread by {name} compared {n} approaches to {a}; the plain one won.",
    "Seasonal changes affect {b} more than people expect, so adjust {a} in winter.",
    "Do not copy an expert's routine for {a}; it assumes years of {b} you do not have yet.",
    "Once {a} is stable, add {b} gradually, about {n} percent more each week.",
    "The error people make with {a} is treating it as a one-off instead of a habit.",
    "You can test {b} cheaply at home before committing to {a}.",
    "Compare notes with {name}; their trouble with {b} sounded a lot like yours.",
    "Resist the urge to fix {a} and {b} on the same day.",
    "If {a} still disappoints after {n} tries, the cause is almost certainly {b}.",
    "Keep the setup for {a} boring and repeatable; surprises belong in {b}.",
    "Small, frequent sessions of {a} beat one long weekend of {b}.",
    "Read the manual section on {b} once; it explains most {a} surprises.",
]
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemi", "Luca", "Mei", "Noor")
CITIES = ("Lisbon", "Leeds", "Osaka", "Tartu", "Porto", "Quito", "Ghent", "Perth", "Bergen", "Oaxaca", "Lyon", "Cork")
FILLER = ("honestly", "for what it's worth", "in short", "as a rule of thumb", "practically speaking", "overall")
SYNONYMS = {"best": "ideal", "change": "adjust", "improve": "get better at", "simple": "basic", "usually": "typically",
            "small": "little", "first": "initially", "plan": "schedule", "mistakes": "errors"}


def phrase(rng: random.Random, topic: str) -> str:
    return rng.choice(TOPICS[topic])


def fill(rng: random.Random, template: str, topic: str) -> str:
    return template.format(a=phrase(rng, topic), b=phrase(rng, topic), n=rng.randint(2, 40), o=rng.choice(OPENERS),
                           name=rng.choice(NAMES), city=rng.choice(CITIES))


def reply(rng: random.Random, topic: str) -> str:
    sentences = [fill(rng, t, topic) for t in rng.sample(SENTENCES, rng.randint(3, 6))]
    if rng.random() < 0.3:  # real answers wander into neighbouring subjects
        sentences.insert(rng.randrange(len(sentences) + 1), fill(rng, rng.choice(SENTENCES), rng.choice(list(TOPICS))))
    if rng.random() < 0.5:
        sentences[0] = rng.choice(FILLER).capitalize() + ", " + sentences[0][0].lower() + sentences[0][1:]
    return " ".join(sentences)


def perturb(rng: random.Random, text: str) -> str:
    """A near-duplicate: one or two small edits a re-asked question or re-pasted answer shows."""
    for _ in range(rng.randint(1, 2)):
        edit = rng.randrange(5)
        words = text.split(" ")
        if edit == 0:  # typo: swap two letters inside a longer word
            idx = [i for i, w in enumerate(words) if len(w) > 5]
            if idx:
                i = rng.choice(idx)
                w = words[i]
                j = rng.randrange(1, len(w) - 2)
                words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
            text = " ".join(words)
        elif edit == 1:
            text = text[0].lower() + text[1:]
        elif edit == 2:
            text = text.rstrip(".?!") + rng.choice(("", "!", "..", " ?"))
        elif edit == 3:
            text = text.replace(". ", ".  ", 1).replace(", ", " , ", 1)
        else:
            for a, b in SYNONYMS.items():
                if f" {a} " in text:
                    text = text.replace(f" {a} ", f" {b} ", 1)
                    break
    return text


def conversation(rng: random.Random, topics: list[str], weights: list[float], idx: int, exchanges: int) -> dict:
    topic = rng.choices(topics, weights)[0]
    messages = []
    for _ in range(exchanges):
        messages.append({"role": "user", "content": fill(rng, rng.choice(QUESTIONS), topic)})
        messages.append({"role": "assistant", "content": reply(rng, topic)})
    return {"id": stable_id("bench", idx), "source": "chatgpt", "kind": "conversation", "title": f"{topic} chat {idx}",
            "created_at": None, "messages": messages, "metadata": {"topic": topic},
            "origin": {"file": "conversations.json", "index": idx}}


def generate(messages: int, seed: int, dup_rate: float, exact_rate: float) -> tuple[list[dict], dict]:
    rng = random.Random(seed)
    topics = list(TOPICS)
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(topics))]  # Zipf: skewed themes
    records, planted, exact, count, idx = [], [], [], 0, 0
    while count < messages:
        exchanges = min(rng.choice((1, 1, 2)), (messages - count) // 2 or 1)
        rec = conversation(rng, topics, weights, idx, exchanges)
        records.append(rec)
        count += len(rec["messages"])
        idx += 1
        roll = rng.random()
        if roll < dup_rate + exact_rate and count + len(rec["messages"]) <= messages:
            twin = json.loads(json.dumps(rec))
            twin["id"] = stable_id("bench-dup", idx)
            twin["origin"] = {"file": "conversations.json", "index": idx}
            if roll < dup_rate:
                for m in twin["messages"]:
                    m["content"] = perturb(rng, m["content"])
                planted.append([rec["id"], twin["id"]])
            else:
                exact.append([rec["id"], twin["id"]])
            records.append(twin)
            count += len(twin["messages"])
            idx += 1
    truth = {"seed": seed, "messages": count, "records": len(records), "near_duplicates": planted,
             "exact_duplicates": exact, "topic_weights": dict(zip(topics, weights))}
    return records, truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-rate", type=float, default=0.05, help="share of conversations given a near-duplicate")
    ap.add_argument("--exact-rate", type=float, default=0.01, help="share given an exact copy")
    ap.add_argument("--out", default="bench/out/corpus50k", help="workspace folder to write")
    args = ap.parse_args()
    ws = Workspace(args.out).ensure()
    records, truth = generate(args.messages, args.seed, args.dup_rate, args.exact_rate)
    write_jsonl(ws.corpus, records)
    write_json(ws.root / "truth.json", truth)
    print(f"{truth['messages']} messages in {truth['records']} conversations, "
          f"{len(truth['near_duplicates'])} planted near-duplicates, {len(truth['exact_duplicates'])} exact copies "
          f"-> {ws.corpus}")


if __name__ == "__main__":
    main()
