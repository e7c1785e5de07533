"""The synthetic Biography world of Zheng et al. (ICLR 2025), after Allen-Zhu & Li's "Physics of LMs 3.1".

Individuals have a unique full name and 6 attributes (birth date, birth city, university, major, company,
company city — the company's own city). Each person gets several biographies, each with a random
paraphrase per attribute, sentences in random order and the full name in every sentence (the augmentation
that makes the knowledge extractable by QA fine-tuning later).

Tasks: the pre-training corpus holds the biographies of persons 0..N-1. Task 0 is QA on the first half,
tested on the second half (knowledge *extraction*). Tasks 1, 2, ... are QA on new persons who were never in
pre-training (train = test: the task is to learn new knowledge).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError
from .task import Example, Task

FIRST = ["Aaron", "Abigail", "Adrian", "Alice", "Amelia", "Andrew", "Anna", "Arthur", "Beatrice", "Benjamin",
         "Bianca", "Caleb", "Camila", "Carter", "Chloe", "Daniel", "Delia", "Dominic", "Eleanor", "Elias", "Emma",
         "Ethan", "Felix", "Fiona", "Gabriel", "Grace", "Hannah", "Henry", "Isaac", "Isla", "Jasper", "Julia",
         "Keira", "Leo", "Lucas", "Lydia", "Mason", "Maya", "Nathan", "Nora", "Oliver", "Olivia", "Oscar",
         "Penelope", "Quinn", "Rachel", "Samuel", "Sofia", "Theo", "Vera", "Victor", "Wesley", "Willow", "Zoe"]
MIDDLE = ["Alan", "Blair", "Cruz", "Dale", "Eden", "Finley", "Gray", "Hayes", "Ira", "Jude", "Kai", "Lane",
          "Marlow", "Noel", "Ocean", "Pax", "Reese", "Sage", "Tate", "Vale", "Wren", "Arden", "Bryn", "Cove",
          "Drew", "Ellis", "Flynn", "Hollis", "Jules", "Kit"]
LAST = ["Abbott", "Barnes", "Calloway", "Dalton", "Ellison", "Fairbanks", "Garrison", "Hargrove", "Ingram",
        "Jennings", "Kendrick", "Lancaster", "Merritt", "Northcott", "Ostrander", "Pemberton", "Quimby",
        "Radcliffe", "Sterling", "Thornton", "Underwood", "Vance", "Whitfield", "Yardley", "Zimmerman",
        "Ashford", "Blackwood", "Crawley", "Donovan", "Everhart", "Fletcher", "Goodwin", "Holloway", "Iverson",
        "Kingsley", "Langford", "Mercer", "Norwood", "Prescott", "Rowland"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CITIES = ["Boston", "Chicago", "Denver", "Houston", "Phoenix", "Seattle", "Portland", "Atlanta", "Dallas",
          "Miami", "Detroit", "Memphis", "Nashville", "Austin", "Tucson", "Fresno", "Omaha", "Raleigh", "Tampa",
          "Orlando", "Sacramento", "Pittsburgh", "Cleveland", "Baltimore", "Milwaukee", "Albuquerque",
          "Louisville", "Richmond", "Spokane", "Boise"]
UNIVERSITIES = ["Stanford University", "Harvard University", "Yale University", "Princeton University",
                "Columbia University", "Cornell University", "Brown University", "Duke University",
                "Rice University", "Emory University", "Tufts University", "Purdue University",
                "Vanderbilt University", "Northwestern University", "Georgetown University",
                "University of Michigan", "University of Texas", "University of Florida", "University of Oregon",
                "University of Utah", "Ohio State University", "Penn State University", "Boston University",
                "Auburn University", "Clemson University"]
MAJORS = ["Computer Science", "Mathematics", "Physics", "Chemistry", "Biology", "Economics", "History",
          "Philosophy", "Psychology", "Sociology", "Linguistics", "Architecture", "Music", "Nursing", "Geology",
          "Astronomy", "Statistics", "Anthropology", "Journalism", "Marketing", "Accounting", "Finance",
          "Civil Engineering", "Mechanical Engineering", "Electrical Engineering"]
# Each company has one city: the company city attribute follows from the company.
COMPANIES = {"Meta Platforms": "Menlo Park", "Alphabet": "Mountain View", "Apple": "Cupertino",
             "Microsoft": "Redmond", "Amazon": "Seattle", "Nvidia": "Santa Clara", "Intel": "Santa Clara",
             "Oracle": "Austin", "Cisco Systems": "San Jose", "Adobe": "San Jose", "Salesforce": "San Francisco",
             "Boeing": "Arlington", "Ford Motor": "Dearborn", "General Electric": "Boston",
             "Johnson and Johnson": "New Brunswick", "Pfizer": "New York", "Coca Cola": "Atlanta",
             "Delta Air Lines": "Atlanta", "Home Depot": "Atlanta", "Walmart": "Bentonville", "Tyson Foods":
             "Springdale", "FedEx": "Memphis", "Nike": "Beaverton", "Starbucks": "Seattle", "Target": "Minneapolis",
             "Best Buy": "Richfield", "Dell Technologies": "Round Rock", "Caterpillar": "Irving",
             "Procter and Gamble": "Cincinnati", "Kroger": "Cincinnati"}

ATTRIBUTES = ["birth_date", "birth_city", "university", "major", "company", "company_city"]

TEMPLATES = {
    "birth_date": ["{name} was born on {v}.", "{name} came into this world on {v}.",
                   "{name} celebrates a birthday on {v}.", "The birth date of {name} is {v}."],
    "birth_city": ["{name} was born in {v}.", "{name} spent the early years in {v}.", "{name} hails from {v}.",
                   "The birthplace of {name} is {v}."],
    "university": ["{name} studied at {v}.", "{name} graduated from {v}.", "{name} received an education at {v}.",
                   "{name} attended {v}."],
    "major": ["{name} majored in {v}.", "{name} focused on {v} during the studies.",
              "{name} completed a degree in {v}.", "{name} pursued {v} as a field of study."],
    "company": ["{name} worked for {v}.", "{name} was employed by {v}.", "{name} had a job at {v}.",
                "{name} joined {v}."],
    "company_city": ["{name} worked in {v}.", "{name} was based in {v} for work.",
                     "{name} had a workplace in {v}.", "{name} commuted to {v} for work."],
}
QUESTIONS = {
    "birth_date": "What is the birth date of {name}?", "birth_city": "What is the birth city of {name}?",
    "university": "Which university did {name} study at?", "major": "What major did {name} study?",
    "company": "Which company did {name} work for?", "company_city": "Where did {name} work?",
}


class BiographySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_pretrain_persons: int = 400
    bios_per_person: int = 5
    n_new_persons: int = 100       # per later task
    n_new_tasks: int = 1
    seed: int = 0


@dataclass(frozen=True)
class Person:
    name: str
    birth_date: str
    birth_city: str
    university: str
    major: str
    company: str
    company_city: str

    def attribute(self, key: str) -> str:
        return getattr(self, key)


def parse_settings(raw: dict) -> BiographySettings:
    try:
        s = BiographySettings.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"data.biography.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if s.n_pretrain_persons < 2 or s.bios_per_person < 1 or s.n_new_persons < 1 or s.n_new_tasks < 0:
        raise ConfigError("data.biography: need n_pretrain_persons >= 2, bios_per_person >= 1, n_new_persons >= 1")
    capacity = len(FIRST) * len(MIDDLE) * len(LAST)
    needed = s.n_pretrain_persons + s.n_new_tasks * s.n_new_persons
    if needed > capacity // 2:
        raise ConfigError(f"data.biography: {needed} persons exceed the name pool (at most {capacity // 2})")
    return s


def generate_persons(n: int, seed: int) -> list[Person]:
    """``n`` persons with unique full names; the same seed always gives the same persons."""
    rng = random.Random(f"biography:{seed}")
    names: set[str] = set()
    persons = []
    while len(persons) < n:
        name = f"{rng.choice(FIRST)} {rng.choice(MIDDLE)} {rng.choice(LAST)}"
        if name in names:
            continue
        names.add(name)
        company = rng.choice(sorted(COMPANIES))
        date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1900, 2099)}"
        persons.append(Person(name, date, rng.choice(CITIES), rng.choice(UNIVERSITIES), rng.choice(MAJORS), company,
                              COMPANIES[company]))
    return persons


def biography(person: Person, rng: random.Random) -> str:
    sentences = [rng.choice(TEMPLATES[a]).format(name=person.name, v=person.attribute(a)) for a in ATTRIBUTES]
    rng.shuffle(sentences)
    return " ".join(sentences)


def biographies(persons: list[Person], per_person: int, seed: int) -> list[str]:
    rng = random.Random(f"bios:{seed}")
    return [biography(p, rng) for p in persons for _ in range(per_person)]


def qa_examples(persons: list[Person], task: str) -> list[Example]:
    return [Example(QUESTIONS[a].format(name=p.name) + "\nAnswer:", p.attribute(a), task)
            for p in persons for a in ATTRIBUTES]


@dataclass
class BiographyWorld:
    settings: BiographySettings
    pretrain_persons: list[Person]
    new_persons: list[list[Person]]

    @property
    def pretrain_corpus(self) -> list[str]:
        return biographies(self.pretrain_persons, self.settings.bios_per_person, self.settings.seed)

    def tasks(self) -> list[Task]:
        half = len(self.pretrain_persons) // 2
        first, second = self.pretrain_persons[:half], self.pretrain_persons[half:]
        tasks = [Task("task0", qa_examples(first, "task0"), qa_examples(second, "task0"), "exact_match")]
        for i, group in enumerate(self.new_persons, 1):
            ex = qa_examples(group, f"task{i}")
            tasks.append(Task(f"task{i}", ex, list(ex), "exact_match"))
        return tasks

    def vocabulary_corpus(self) -> list[str]:
        """Every text the model will see: the tokenizer is built from it."""
        qa = [f"{ex.prompt} {ex.target}" for t in self.tasks() for ex in t.train + t.test]
        return self.pretrain_corpus + qa + [" ".join(t) for ts in TEMPLATES.values() for t in ts]


def build_world(settings: BiographySettings | dict) -> BiographyWorld:
    s = settings if isinstance(settings, BiographySettings) else parse_settings(settings)
    everyone = generate_persons(s.n_pretrain_persons + s.n_new_tasks * s.n_new_persons, s.seed)
    pre = everyone[: s.n_pretrain_persons]
    rest = everyone[s.n_pretrain_persons:]
    groups = [rest[i * s.n_new_persons:(i + 1) * s.n_new_persons] for i in range(s.n_new_tasks)]
    return BiographyWorld(s, pre, groups)
