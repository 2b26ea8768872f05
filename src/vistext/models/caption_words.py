"""The words captions are composed from when no caption bank is given: everyday subjects, what they do, where.

Written for this project (no dataset's captions are copied), so it ships under the project's licence. Subjects
are the people, animals and things everyday photos show; actions are phrased as participles ("running") so one
sentence shape fits one or several subjects ("a dog running", "two dogs running"); scenes are prepositional
phrases. Each action names the kinds of subject it fits, so no sentence has a car swimming or a dog skiing.
``captioner.CaptionComposer`` scores them against a photo and keeps only the details that make the sentence fit
the photo better.
"""

from __future__ import annotations

from dataclasses import dataclass

PERSON, ANIMAL, THING = "person", "animal", "thing"


@dataclass(frozen=True)
class Subject:
    """``word``: the tag scored against the photo; ``one``/``many``: how a sentence names one or several."""

    word: str
    one: str
    many: str | None
    kind: str


@dataclass(frozen=True)
class Action:
    phrase: str
    kinds: tuple[str, ...]


def _subjects(kind: str, rows: str) -> list[Subject]:
    """``word|one|many`` rows ("-" for no plural) -> subjects of one kind."""
    out = []
    for row in rows.strip().splitlines():
        word, one, many = (part.strip() for part in row.split("|"))
        out.append(Subject(word, one, None if many == "-" else many, kind))
    return out


SUBJECTS: tuple[Subject, ...] = tuple(
    _subjects(
        PERSON,
        """
        man|a man|two men
        woman|a woman|two women
        boy|a boy|two boys
        girl|a girl|two girls
        child|a child|children
        baby|a baby|-
        people|a person|a group of people
        crowd|a crowd of people|-
        football player|a football player|football players
        biker|a biker|bikers
        climber|a climber|-
        surfer|a surfer|-
        skier|a skier|-
        swimmer|a swimmer|-
        """,
    )
    + _subjects(
        ANIMAL,
        """
        dog|a dog|two dogs
        cat|a cat|two cats
        horse|a horse|horses
        cow|a cow|cows
        sheep|a sheep|sheep
        bird|a bird|birds
        duck|a duck|ducks
        """,
    )
    + _subjects(
        THING,
        """
        car|a car|cars
        bicycle|a bicycle|bicycles
        motorcycle|a motorcycle|motorcycles
        boat|a boat|boats
        bus|a bus|-
        train|a train|-
        airplane|an airplane|-
        building|a building|buildings
        house|a house|houses
        bridge|a bridge|-
        tree|a tree|trees
        flowers|flowers|-
        food|a plate of food|-
        table|a table|-
        ball|a ball|-
        mountain|a mountain|mountains
        """,
    )
)

_PEOPLE_AND_ANIMALS = (PERSON, ANIMAL)
ACTIONS: tuple[Action, ...] = tuple(
    [
        Action(phrase, _PEOPLE_AND_ANIMALS)
        for phrase in (
            "running",
            "jumping",
            "playing",
            "swimming",
            "walking",
            "sitting",
            "standing",
            "lying down",
            "eating",
            "splashing in the water",
            "playing with a ball",
        )
    ]
    + [Action(phrase, (ANIMAL,)) for phrase in ("catching a ball", "carrying a stick", "fetching a stick")]
    + [
        Action(phrase, (PERSON,))
        for phrase in (
            "climbing",
            "riding a bicycle",
            "riding a horse",
            "riding a skateboard",
            "surfing",
            "skiing",
            "snowboarding",
            "playing football",
            "playing soccer",
            "playing basketball",
            "dancing",
            "smiling",
            "posing for a picture",
            "reading",
            "fishing",
            "hiking",
            "singing",
            "playing a guitar",
            "wearing a helmet",
        )
    ]
)

# ImageNet-1k classes a subject above names in the everyday word: a photo of a Doberman is "a dog" (the breeds
# are classes 151-268 and 281-285 of the classifier, whose labels the captions would otherwise use)
NAMED_BY_SUBJECT: dict[str, range] = {"dog": range(151, 269), "cat": range(281, 286)}

SCENES: tuple[str, ...] = (
    "on the grass",
    "in a field",
    "on the beach",
    "in the water",
    "in the ocean",
    "in a lake",
    "in a river",
    "in a pool",
    "in the snow",
    "in the sand",
    "in the mud",
    "on a street",
    "on a sidewalk",
    "on a road",
    "in a city",
    "in a park",
    "in the woods",
    "on a mountain",
    "on a rock",
    "on a trail",
    "in the desert",
    "on a bridge",
    "on a boat",
    "on a stage",
    "in a crowd",
    "at a playground",
    "in a room",
    "in a kitchen",
    "at a restaurant",
    "in front of a building",
    "by a fence",
    "at night",
)


# Words of the default tag vocabulary that do not name one thing a caption can say "a ..." of: categories
# ("animal", "furniture") and mass or plural nouns ("snow", "glasses", "cattle").
NOT_ONE_THING: frozenset[str] = frozenset(
    {"animal", "vehicle", "aircraft", "drink", "furniture", "clothing", "musical instrument", "snow",
     "glasses", "cattle", "big cat", "fruit", "vegetable"}
)  # fmt: skip
