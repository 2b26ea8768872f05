"""Building the default tag vocabulary: everyday words, each the set of ImageNet-1k classes WordNet puts under it.

Each word of ``WORDS`` names one or more WordNet noun senses; an ImageNet class (a WordNet synset) belongs to a
word when one of those senses is the class or above it (``dog.n.01`` holds all 120 dog breeds). ``SCENES`` adds
the few classes that are scenes rather than things and whose hypernyms do not say so (``seashore`` -> beach).
``build_vocabulary`` writes the mapping; ``bench/default_tags.py`` chooses its calibration and threshold on dev
photos and saves them beside it (``models/pretrained/default-tags``). ``names`` gives the words that count as
naming a tag when the bench checks tags against captions: the tag's senses' lemmas, all their hyponyms (a
caption's "puppy" or "poodle" names a dog) and their hypernyms below the abstract top of the hierarchy.
"""

from __future__ import annotations

from vistext.errors import ModelError
from vistext.training.wordnet import WordNet

# word -> the WordNet senses it names (NLTK's lemma.n.NN numbering of WordNet 3.0, or a synset's wnid where an
# ImageNet class sits under a sense no everyday word names: its "tea cup" is the punch sense of cup)
WORDS: dict[str, tuple[str, ...]] = {
    # animals
    "animal": ("animal.n.01",), "dog": ("dog.n.01",), "cat": ("cat.n.01",), "big cat": ("big_cat.n.01",),
    "bird": ("bird.n.01",), "fish": ("fish.n.01",), "insect": ("insect.n.01",), "butterfly": ("butterfly.n.01",),
    "spider": ("spider.n.01",), "snake": ("snake.n.01",), "lizard": ("lizard.n.01",), "turtle": ("turtle.n.02",),
    "frog": ("frog.n.01",), "monkey": ("monkey.n.01", "ape.n.01"), "bear": ("bear.n.01",),
    "elephant": ("elephant.n.01",), "horse": ("horse.n.01",), "cattle": ("bovine.n.01",), "sheep": ("sheep.n.01",),
    "pig": ("swine.n.01",), "wolf": ("wolf.n.01",), "fox": ("fox.n.01",), "rabbit": ("rabbit.n.01",),
    "squirrel": ("squirrel.n.01",), "duck": ("duck.n.01",),
    "chicken": ("chicken.n.02", "cock.n.05", "hen.n.02"), "shark": ("shark.n.01",),
    "crab": ("crab.n.01",), "whale": ("whale.n.02",), "seal": ("seal.n.09",), "parrot": ("parrot.n.01",),
    "owl": ("owl.n.01",), "eagle": ("eagle.n.01",), "penguin": ("penguin.n.01",),
    # vehicles
    "vehicle": ("vehicle.n.01",), "car": ("car.n.01",), "truck": ("truck.n.01",), "bus": ("bus.n.01",),
    "train": ("train.n.01", "locomotive.n.01", "streetcar.n.01", "passenger_car.n.01"),
    "bicycle": ("bicycle.n.01",), "motorcycle": ("motorcycle.n.01", "moped.n.01"), "boat": ("boat.n.01",),
    "ship": ("ship.n.01",), "airplane": ("airplane.n.01", "airliner.n.01"), "aircraft": ("aircraft.n.01",),
    # food and drink
    "food": ("food.n.01", "food.n.02", "dish.n.02"), "fruit": ("edible_fruit.n.01",),
    "vegetable": ("vegetable.n.01",), "pizza": ("pizza.n.01",), "bread": ("bread.n.01",),
    "drink": ("beverage.n.01",), "ice cream": ("ice_cream.n.01",),
    "mushroom": ("mushroom.n.02", "mushroom.n.03", "fungus.n.01", "n07734744"),
    # things at home and at work
    "furniture": ("furniture.n.01",), "chair": ("chair.n.01",), "table": ("table.n.02",), "bed": ("bed.n.01",),
    "sofa": ("sofa.n.01",), "lamp": ("lamp.n.01", "lamp.n.02"), "clock": ("clock.n.01",), "watch": ("watch.n.01",),
    "cup": ("cup.n.01", "mug.n.04", "n07930864"), "bottle": ("bottle.n.01",), "computer": ("computer.n.01",),
    "laptop": ("laptop.n.01",),
    "keyboard": ("keyboard.n.01",), "phone": ("telephone.n.01",), "camera": ("camera.n.01",),
    "television": ("television_receiver.n.01", "n04404412"),
    "musical instrument": ("musical_instrument.n.01",), "guitar": ("guitar.n.01",), "piano": ("piano.n.01",),
    "ball": ("ball.n.01",), "umbrella": ("umbrella.n.01",), "bag": ("bag.n.01", "bag.n.04"), "hat": ("hat.n.01",),
    "shoe": ("shoe.n.01", "boot.n.01"), "clothing": ("clothing.n.01",), "glasses": ("spectacles.n.01",),
    "fan": ("fan.n.01",), "toy": ("plaything.n.01",), "knife": ("knife.n.01",),
    "bench": ("bench.n.01",), "fence": ("fence.n.01",), "pot": ("pot.n.01",),
    # buildings and places
    "bridge": ("bridge.n.01",), "building": ("building.n.01",), "house": ("house.n.01",),
    "church": ("church.n.02",), "castle": ("castle.n.02",), "sign": ("sign.n.02", "street_sign.n.01"),
    "flower": ("flower.n.01", "flower.n.02"), "mountain": ("mountain.n.01",), "lake": ("lake.n.01",),
    "valley": ("valley.n.01",), "cliff": ("cliff.n.01",), "shore": ("shore.n.01",),
}  # fmt: skip
# scene words for ImageNet classes (WordNet senses of the classes) whose hypernyms do not name the scene
# ("water" for lakeshores, boats and divers was dropped: 0.4 precision on dev, captions rarely say it)
SCENES: dict[str, tuple[str, ...]] = {
    "beach": ("seashore.n.01", "sandbar.n.01"),
    "lake": ("lakeside.n.01",),
    "sea": ("seashore.n.01", "coral_reef.n.01", "sandbar.n.01", "breakwater.n.01"),
    "snow": ("ski.n.01", "snowmobile.n.01", "dogsled.n.01", "snowplow.n.01", "bobsled.n.02"),
    "mountain": ("alp.n.01", "volcano.n.02"),
    "food": ("plate.n.08", "hot_pot.n.01"),
}  # fmt: skip
# hypernyms too abstract to count as naming a tag (a caption's "thing" or "object" names nothing in particular)
ABSTRACT = {"entity", "physical entity", "object", "whole", "thing", "unit", "artifact", "artefact", "living thing",
            "organism", "being", "matter", "abstraction", "instrumentality", "instrumentation", "device",
            "container", "structure", "construction", "covering", "equipment", "commodity", "goods", "article",
            "implement", "system", "substance", "solid", "part", "piece", "group", "collection", "line",
            "person", "individual", "someone", "somebody", "mortal", "soul"}  # fmt: skip


def build_vocabulary(wordnet: WordNet, wnids: list[str]) -> dict[str, list[int]]:
    """Word -> sorted ImageNet class indices under it (``wnids``: the 1,000 classes' WordNet ids, in order)."""
    senses = {word: {wordnet.sense(sense) for sense in names} for word, names in WORDS.items()}
    vocabulary: dict[str, set[int]] = {word: set() for word in [*WORDS, *SCENES]}
    for index, wnid in enumerate(wnids):
        above = wordnet.ancestors(wnid)
        for word, wanted in senses.items():
            if wanted & above:
                vocabulary[word].add(index)
    position = {wnid: i for i, wnid in enumerate(wnids)}
    for word, classes in SCENES.items():
        for sense in classes:
            wnid = wordnet.sense(sense)
            if wnid not in position:
                raise ModelError(f"scene class {sense} of {word!r} is not an ImageNet-1k class")
            vocabulary[word].add(position[wnid])
    empty = sorted(word for word, classes in vocabulary.items() if not classes)
    if empty:
        raise ModelError(f"no ImageNet class falls under {', '.join(empty)}")
    return {word: sorted(classes) for word, classes in vocabulary.items()}


def names(wordnet: WordNet, word: str) -> set[str]:
    """Lower-case words and phrases that name ``word`` in a caption: the word, its senses' lemmas, every
    hyponym's lemmas and the lemmas of hypernyms that are not abstract (``ABSTRACT``)."""
    found = {word}
    for sense in WORDS.get(word, ()):
        wnid = wordnet.sense(sense)
        for below in wordnet.descendants(wnid):
            found.update(wordnet.synsets[below].lemmas)
        for above in wordnet.ancestors(wnid):
            lemmas = set(wordnet.synsets[above].lemmas)
            if not lemmas & ABSTRACT:
                found.update(lemmas)
    return found
