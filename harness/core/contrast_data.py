"""Contrast requests: benign questions that carry the words harmful requests carry ("kill", "shoot",
"execute", "attack", "poison") in a harmless sense. Alignment that sees harmful requests only with those
words learns the words as refusal cues and refuses "How do I shoot a short film?" (exaggerated safety,
XSTest: Röttger et al. 2024, arXiv 2308.01263). Pairing such words with helpful answers teaches the
model to judge the request, not its vocabulary (the borderline prompts of Llama 2's safety data,
Touvron et al. 2023, arXiv 2307.09288).

Written by us, by sense rather than from any evaluation item: homonyms, figurative use, safe targets
(pests, mould, bacteria), fiction and games, sport, cooking, history and fictional characters' privacy.
XSTest's categories guided which senses to cover, which is why XSTest measures less held-out
generalisation on a model aligned with them (docs/small-organism.md). Any request too close to an
evaluation prompt is dropped (``contrast_requests``).
"""
from __future__ import annotations

import re
from functools import lru_cache

from harness.core.safety_data import dedupe_excluding, eval_prompt_keys, xstest_prompts

CONTRAST_REQUESTS = (
    # Homonyms and technical senses
    "How do I terminate a month-to-month apartment lease?",
    "What does an executor do after someone's will is read?",
    "How do I execute a limit order on a stock trading app?",
    "How can I execute a clean cartwheel?",
    "How do I shoot a short film on my phone?",
    "What camera settings should I use to shoot portraits at sunset?",
    "How do I shoot a three-pointer more consistently?",
    "How can I steal second base in softball?",
    "How do I snipe an online auction in its last seconds?",
    "How do I hack together a quick prototype at a hackathon?",
    "What are some life hacks for keeping a small kitchen tidy?",
    "How do I strike up a conversation with a stranger at a conference?",
    "How do I punch down bread dough after it rises?",
    "How do I break in a new pair of leather boots?",
    "How do I beat egg whites into stiff peaks?",
    "How do I crush garlic without a garlic press?",
    "How do I make crispy smashed potatoes?",
    "How do I fire a clay pot in a kiln?",
    "How do I use a hot glue gun for crafts?",
    "How do I use a staple gun to reupholster a chair?",
    "What is the safest way to sharpen a kitchen knife?",
    "How do I improve my knife skills for chopping vegetables?",
    "How do I kill the engine on an outboard motor?",
    "How do I choke up on a baseball bat?",
    "How do I make a bath bomb at home?",
    "How do I avoid getting photobombed in travel pictures?",
    "How do I attack the net in volleyball?",
    "How do I throw a jab correctly in a boxing class?",
    "What does it mean when a tennis player smashes an overhead?",
    "How do I trigger a GitHub Actions workflow manually?",
    "How do I abort a merge in git?",
    "How do I force quit a frozen app on a Mac?",
    # Figurative language
    "How do I attack a math proof I'm stuck on?",
    "How do I drown out noise from my neighbours so I can sleep?",
    "How do I burn more calories on a daily walk?",
    "How do I fight off a cold quickly?",
    "How do I hunt for a job after graduating?",
    "What is a secret weapon for a great chili?",
    "How do I make a killer first impression at a new job?",
    "How do I crush my sales target this quarter?",
    "How do I shoot down a bad idea in a meeting politely?",
    "How do I take a stab at writing poetry?",
    "How do I break the ice at a party where I know nobody?",
    "How can I knock out my to-do list before lunch?",
    "How do I bomb-proof my budget against surprise expenses?",
    "How do I slay my first half marathon?",
    "How do I destroy my procrastination habit?",
    "How do I tackle a messy garage in one weekend?",
    "How do I nail a job interview for a nursing position?",
    "What does it mean to bury the lede in a news article?",
    # Safe targets
    "How do I get rid of fruit flies in my kitchen?",
    "How do I exterminate termites in a wooden deck?",
    "How do I kill bacteria on a wooden cutting board?",
    "How do I kill mould in my shower grout?",
    "What kills aphids on roses without harming bees?",
    "How do I butcher a whole chicken into parts?",
    "How do I safely remove a wasp nest under my deck?",
    "How do I trap a stray cat to take it to the vet?",
    "How do I poison-proof my home for a new toddler?",
    "What should I do if my dog ate something poisonous?",
    "How do I treat a poison ivy rash?",
    "How do I destroy old hard drives before recycling them?",
    "How do I eliminate credit card debt?",
    "How do I eliminate background noise in a podcast recording?",
    "How do I smother a small grease fire in a pan?",
    "How do I starve weeds of light with mulch?",
    # Fiction, games and sport
    "How do I defeat the final boss in a platformer game?",
    "How do I raid a dungeon with my friends in an online game?",
    "What is the best strategy to capture the queen in chess?",
    "How do I checkmate with a king and rook?",
    "How do I write a convincing plot twist for a murder mystery novel?",
    "How should the villain in my fantasy novel plan a castle siege?",
    "How do I stage a realistic sword fight for a school play?",
    "How do I make fake blood for a Halloween costume?",
    "How do I ambush the other team in a paintball game?",
    "How do I tackle safely in rugby?",
    "How do I win a pillow fight with my little brother?",
    "How do I sink the eight ball in pool?",
    # History and definitions
    "What was the Cuban Missile Crisis?",
    "What happened at the Battle of Hastings?",
    "Who assassinated Julius Caesar and why?",
    "How did the Black Death spread in medieval Europe?",
    "What weapons did Roman legionaries carry?",
    "Why did the Titanic sink?",
    "What is the difference between manslaughter and homicide?",
    "What does the word 'arson' mean?",
    "What is a hostile takeover in business?",
    # Fictional characters' privacy
    "What is Paddington Bear's home address in London?",
    "Where does Bilbo Baggins live?",
    "What is SpongeBob SquarePants's phone number?",
)

_WORD = re.compile(r"[a-z]+")
# Words that carry no sense of a request: shared by many questions, they do not make two alike.
_FUNCTION_WORDS = frozenset(
    "what does how the and for with that this from have your best should about would there their into "
    "when where which some after before without more like them they then make mean can could who why "
    "is are do did a an of to in on at my i it be or as by".split())
# Two requests alike in at least this share of their content words count as the same request.
TOO_CLOSE = 0.35


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS)


def too_close(request: str, others: list[frozenset[str]]) -> bool:
    """Whether ``request`` shares at least ``TOO_CLOSE`` of its content words (Jaccard) with any other."""
    words = content_words(request)
    return any(len(words & other) / max(1, len(words | other)) >= TOO_CLOSE for other in others)


@lru_cache(maxsize=1)
def contrast_requests() -> tuple[str, ...]:
    """``CONTRAST_REQUESTS`` without any that equals an evaluation prompt or is too close to an XSTest
    prompt (safe or unsafe), so that no XSTest item is trained on, even reworded."""
    xstest = [content_words(r["prompt"]) for r in xstest_prompts()]
    kept = dedupe_excluding(list(CONTRAST_REQUESTS), eval_prompt_keys())
    return tuple(r for r in kept if not too_close(r, xstest))
