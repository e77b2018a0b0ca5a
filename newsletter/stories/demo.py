"""Fictional demo outlets and stories, so a fresh install has a realistic week of news.

Everything is generated from hand-written building blocks with a fixed seed: the same
text every time, no network, no outside data. Only the times move, relative to the
current hour, so the stories always look recent. Written through `import_stories`, like
any other import, so running it again updates in place and creates nothing new.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.stories.coverage import BlindspotRule, Side, coverage_of_ratings, side_of
from newsletter.stories.importing import ImportReport, import_stories, slugify
from newsletter.stories.models import Bias, Factuality

DEMO_SEED = 20250515
DEMO_STORY_COUNT = 44
DEMO_DAYS = 5

# (slug, name, bias, factuality): every point of the scale, two unrated, all fictional.
OUTLETS: list[tuple[str, str, Bias, Factuality]] = [
    ("solidarity-dispatch", "Solidarity Dispatch", Bias.FAR_LEFT, Factuality.MIXED),
    ("the-peoples-wire", "The People's Wire", Bias.FAR_LEFT, Factuality.LOW),
    ("progress-journal", "Progress Journal", Bias.LEFT, Factuality.HIGH),
    ("the-commons-review", "The Commons Review", Bias.LEFT, Factuality.MOSTLY_FACTUAL),
    ("harborview-herald", "Harborview Herald", Bias.LEAN_LEFT, Factuality.HIGH),
    ("lakeside-tribune", "Lakeside Tribune", Bias.LEAN_LEFT, Factuality.VERY_HIGH),
    ("coastal-daily-post", "Coastal Daily Post", Bias.LEAN_LEFT, Factuality.HIGH),
    ("national-wire-service", "National Wire Service", Bias.CENTER, Factuality.VERY_HIGH),
    ("the-civic-observer", "The Civic Observer", Bias.CENTER, Factuality.HIGH),
    ("plainview-public-radio", "Plainview Public Radio", Bias.CENTER, Factuality.VERY_HIGH),
    ("the-frontier-journal", "The Frontier Journal", Bias.LEAN_RIGHT, Factuality.HIGH),
    ("heartland-courier", "Heartland Courier", Bias.LEAN_RIGHT, Factuality.MOSTLY_FACTUAL),
    ("the-market-sentinel", "The Market Sentinel", Bias.LEAN_RIGHT, Factuality.HIGH),
    ("the-liberty-courant", "The Liberty Courant", Bias.RIGHT, Factuality.MIXED),
    ("standard-bearer-review", "Standard Bearer Review", Bias.RIGHT, Factuality.MOSTLY_FACTUAL),
    ("iron-eagle-news", "Iron Eagle News", Bias.FAR_RIGHT, Factuality.LOW),
    ("the-rampart-signal", "The Rampart Signal", Bias.FAR_RIGHT, Factuality.VERY_LOW),
    (
        "riverside-community-bulletin",
        "Riverside Community Bulletin",
        Bias.UNRATED,
        Factuality.UNRATED,
    ),
    ("techpulse-daily", "TechPulse Daily", Bias.UNRATED, Factuality.MIXED),
]


@dataclass(frozen=True)
class Subject:
    """One running news subject; each demo story is an event in one of them."""

    topics: tuple[str, ...]
    name: str  # "rent stabilization bill", as it reads after "the"
    title: str  # the same in headline case
    body: str  # who acts, as it reads at the start of a sentence
    what: str  # "would ...", what the measure does
    supporters: str
    opponents: str
    left_voices: str  # whom left-leaning outlets quote, and what they say
    left_view: str
    left_short: str  # the same voices in a headline
    right_voices: str
    right_view: str
    right_short: str
    center_view: str  # a sentence
    figure: str  # a sentence with a number
    next_step: str  # a sentence
    events: tuple[str, ...]


SUBJECTS: list[Subject] = [
    Subject(
        topics=("Housing", "Economy"),
        name="rent stabilization bill",
        title="Rent Stabilization Bill",
        body="The state Senate's housing committee",
        what="would cap yearly rent increases at 5 percent for buildings more than 15 years old",
        supporters="tenant unions and several big-city mayors",
        opponents="landlord associations and home builders",
        left_voices="tenant organizers",
        left_view="say the cap would keep working families in their neighborhoods as rents "
        "climb faster than wages",
        left_short="Tenant Advocates",
        right_voices="landlords and builders",
        right_view="warn that price controls discourage new construction and would deepen the "
        "very shortage they aim to fix",
        right_short="Landlords",
        center_view="Housing economists quoted across outlets said caps bring quick relief to "
        "current tenants but tend to slow new building over time.",
        figure="Median rent in the state's largest metro areas rose 11 percent last year, "
        "according to the state housing agency.",
        next_step="A full Senate vote is expected before the session ends later this month.",
        events=("advance", "report", "rally"),
    ),
    Subject(
        topics=("Energy", "Climate"),
        name="offshore wind lease sale",
        title="Offshore Wind Lease Sale",
        body="The Interior Department",
        what="would open 1.2 million acres off the Atlantic coast to wind developers",
        supporters="clean-energy companies and building-trades unions",
        opponents="commercial fishing groups and several coastal towns",
        left_voices="climate groups and union leaders",
        left_view="argue the projects are essential to meeting emissions targets and would "
        "create thousands of construction jobs",
        left_short="Climate Groups",
        right_voices="fishing crews and ratepayer advocates",
        right_view="say the turbines would raise electricity rates, threaten fisheries and "
        "depend on generous federal subsidies",
        right_short="Fishing Towns",
        center_view="Grid analysts noted that the projects would not deliver power for at least "
        "six years, whatever the outcome of the current fight.",
        figure="Developers bid a combined $4.3 billion in earlier rounds, though two projects "
        "were cancelled last year over rising costs.",
        next_step="Bids are due in 60 days, and a coalition of fishing groups has said it will "
        "sue.",
        events=("advance", "blocked", "poll"),
    ),
    Subject(
        topics=("Immigration",),
        name="border processing overhaul",
        title="Border Processing Overhaul",
        body="The House Homeland Security Committee",
        what="would hire 2,000 asylum officers and set a 90-day deadline for first asylum "
        "decisions",
        supporters="immigrant advocates and border-county officials",
        opponents="immigration hard-liners in both chambers",
        left_voices="immigrant advocates",
        left_view="say faster, fairer hearings would end months of limbo for families and ease "
        "pressure on crowded shelters",
        left_short="Immigrant Advocates",
        right_voices="border-security hawks",
        right_view="argue the plan rewards illegal crossings without funding the barriers and "
        "agents needed to stop them",
        right_short="Border Hawks",
        center_view="Policy researchers said the hiring goal is ambitious, given that the agency "
        "has struggled to fill the positions it already has.",
        figure="The backlog of pending asylum cases now exceeds 1.1 million, according to the "
        "immigration courts' own figures.",
        next_step="Committee leaders hope to bring the bill to the floor after the holiday recess.",
        events=("advance", "stall", "poll"),
    ),
    Subject(
        topics=("Healthcare", "Economy"),
        name="prescription drug price cap",
        title="Prescription Drug Price Cap",
        body="The Senate Finance Committee",
        what="would limit out-of-pocket costs for insulin and inhalers to $35 a month for "
        "people with private insurance",
        supporters="patient groups and consumer advocates",
        opponents="pharmaceutical trade groups and some insurers",
        left_voices="patients and their doctors",
        left_view="say the cap would end the choice many families face between medicine and rent",
        left_short="Patient Groups",
        right_voices="drugmakers and free-market economists",
        right_view="warn that price limits would cut research budgets and push insurers to "
        "raise premiums for everyone",
        right_short="Drugmakers",
        center_view="Budget analysts estimated the cap would cost $9 billion over ten years, "
        "depending on how insurers respond.",
        figure="About one in five insulin users reported skipping doses because of cost in a "
        "national survey last year.",
        next_step="The committee's markup resumes next week, with amendments from both parties "
        "on the table.",
        events=("advance", "report", "passed"),
    ),
    Subject(
        topics=("Education",),
        name="school voucher expansion",
        title="School Voucher Expansion",
        body="The state House of Representatives",
        what="would give families $7,500 a year per child to spend on private school tuition "
        "or home schooling",
        supporters="parent-choice groups and religious school networks",
        opponents="teachers' unions and rural school superintendents",
        left_voices="teachers and rural superintendents",
        left_view="argue the program would drain money from the public schools that most "
        "children attend",
        left_short="Teachers",
        right_voices="parent-choice groups",
        right_view="say parents, not zip codes, should decide where children learn, and that "
        "competition lifts every school",
        right_short="Parents",
        center_view="Education researchers noted that results from similar programs elsewhere "
        "are mixed, with wide gaps in how families use the money.",
        figure="The program's first-year cost is estimated at $1.4 billion, roughly 8 percent "
        "of the state's school budget.",
        next_step="The state Senate is expected to take up the measure within two weeks.",
        events=("passed", "poll", "rally"),
    ),
    Subject(
        topics=("Economy", "Labor"),
        name="minimum wage increase",
        title="Minimum Wage Increase",
        body="The city council",
        what="would raise the local minimum wage to $20 an hour in three yearly steps",
        supporters="labor unions and faith groups",
        opponents="restaurant owners and the regional chamber of commerce",
        left_voices="low-wage workers and organizers",
        left_view="say a full-time worker cannot afford a one-bedroom apartment in the city "
        "on today's wage",
        left_short="Workers",
        right_voices="small-business owners",
        right_view="warn they will cut hours, raise prices or move to the suburbs if labor "
        "costs jump this fast",
        right_short="Small Businesses",
        center_view="Economists cited by several outlets said modest increases have had small "
        "effects on jobs, but few cities have tried a jump this large.",
        figure="The city's current minimum wage is $15.50, and about 140,000 workers earn "
        "within a dollar of it.",
        next_step="A final council vote is set for the first meeting of next month.",
        events=("advance", "report", "passed"),
    ),
    Subject(
        topics=("Technology", "Family"),
        name="social media age verification law",
        title="Social Media Age Verification Law",
        body="The state attorney general's office",
        what="would require platforms to verify users' ages and get a parent's consent for "
        "accounts of anyone under 16",
        supporters="parents' groups and pediatricians",
        opponents="tech industry groups and digital-privacy advocates",
        left_voices="privacy advocates",
        left_view="question whether collecting IDs from every user creates new risks, while "
        "backing tighter limits on data taken from children",
        left_short="Privacy Advocates",
        right_voices="parents' groups",
        right_view="say platforms ignored the harm to teenagers for years and that families "
        "deserve real tools to push back",
        right_short="Parents",
        center_view="Legal analysts noted that courts have blocked similar laws in other states "
        "on free-speech grounds.",
        figure="Nearly half of teenagers say they are online almost constantly, according to a "
        "widely cited national survey.",
        next_step="The law takes effect in January unless a court blocks it first.",
        events=("blocked", "poll", "report"),
    ),
    Subject(
        topics=("Trade", "Economy"),
        name="steel tariff increase",
        title="Steel Tariff Increase",
        body="The Commerce Department",
        what="would raise tariffs on imported steel and aluminum to 35 percent and end most "
        "country exemptions",
        supporters="steelworkers' unions and domestic producers",
        opponents="automakers, farm groups and several major trading partners",
        left_voices="union leaders and consumer economists",
        left_view="are split between welcoming protection for mill jobs and warning that "
        "families will pay more for cars and appliances",
        left_short="Unions",
        right_voices="free-market groups and manufacturers",
        right_view="call the tariffs a tax on American factories, even as some conservatives "
        "cheer a tougher line on trade",
        right_short="Manufacturers",
        center_view="Trade economists said the tariffs would help a small number of mills while "
        "raising costs for the far larger industries that use steel.",
        figure="Steel-using industries employ roughly 80 workers for every one employed in "
        "making steel, according to industry data.",
        next_step="Two trading partners have said they will announce retaliatory measures "
        "within 30 days.",
        events=("advance", "report", "stall"),
    ),
    Subject(
        topics=("Public Safety", "Civil Rights"),
        name="police body camera mandate",
        title="Police Body Camera Mandate",
        body="The state Assembly",
        what="would require every officer to wear a body camera and release footage of "
        "serious incidents within 30 days",
        supporters="civil rights groups and families of people killed by police",
        opponents="police unions and some county sheriffs",
        left_voices="civil rights groups",
        left_view="say quick release of footage is the only way to rebuild trust after "
        "disputed shootings",
        left_short="Civil Rights Groups",
        right_voices="police unions and sheriffs",
        right_view="argue the unfunded mandate will strain small departments and could "
        "compromise open investigations",
        right_short="Police Unions",
        center_view="Several outlets noted that most large departments already use cameras, so "
        "the fight is mainly over release rules and who pays.",
        figure="The mandate would cost an estimated $60 million in its first year, much of it "
        "for storing video.",
        next_step="The bill now heads to the state Senate, where sponsors expect amendments on "
        "cost.",
        events=("passed", "rally", "report"),
    ),
    Subject(
        topics=("Climate", "Transportation"),
        name="vehicle emissions rule",
        title="Vehicle Emissions Rule",
        body="The Environmental Protection Agency",
        what="would require roughly half of new cars sold by 2032 to be electric or plug-in "
        "hybrids",
        supporters="environmental groups and automakers with large electric-vehicle plans",
        opponents="oil producers, car dealers and a coalition of state attorneys general",
        left_voices="environmental groups",
        left_view="say the rule is the biggest single step the country can take to cut "
        "carbon emissions",
        left_short="Environmentalists",
        right_voices="car dealers and energy-state officials",
        right_view="warn it amounts to an electric-car mandate that many drivers do not want "
        "and cannot afford",
        right_short="Dealers",
        center_view="Industry analysts said the target is reachable only if charging networks "
        "grow much faster than they have so far.",
        figure="Electric vehicles made up 9 percent of new car sales last year, up from 6 "
        "percent the year before.",
        next_step="Opponents have 60 days to file legal challenges once the rule is published.",
        events=("passed", "blocked", "poll"),
    ),
    Subject(
        topics=("Elections",),
        name="voter ID requirement",
        title="Voter ID Requirement",
        body="The state Senate",
        what="would require a photo ID to vote in person and an ID number on every mail-in "
        "ballot envelope",
        supporters="election-integrity groups and most majority-party legislators",
        opponents="voting rights groups and several county election clerks",
        left_voices="voting rights groups",
        left_view="argue the rules would keep eligible voters, especially older and rural "
        "residents, from casting ballots",
        left_short="Voting Rights Groups",
        right_voices="election-integrity groups",
        right_view="say showing an ID is a basic safeguard most voters support and one that "
        "builds confidence in results",
        right_short="Election-Integrity Groups",
        center_view="Election officials from both parties said the bigger worry is how little "
        "time they would have to update their systems.",
        figure="About 3 percent of registered voters in the state lack a current driver's "
        "license or state ID, according to the elections office.",
        next_step="If it passes, the rule would take effect for the primary election next spring.",
        events=("advance", "rally", "blocked"),
    ),
    Subject(
        topics=("Foreign Policy", "Defense"),
        name="$12 billion military aid package",
        title="Military Aid Package",
        body="The Senate Appropriations Committee",
        what="would send air-defense systems, ammunition and training support to allies on "
        "NATO's eastern flank",
        supporters="defense hawks in both parties and allied governments",
        opponents="a bloc of lawmakers who want the money offset by spending cuts",
        left_voices="most Democratic lawmakers",
        left_view="back the aid but press for stronger oversight of where the weapons end up",
        left_short="Democrats",
        right_voices="conservative lawmakers",
        right_view="are divided, with some calling the aid vital deterrence and others saying "
        "needs at home must come first",
        right_short="Conservatives",
        center_view="Defense analysts said the package mostly replenishes stockpiles, so much of "
        "the money would be spent at American factories.",
        figure="The package is the largest of its kind this year and would bring total aid to "
        "the region to $41 billion.",
        next_step="Leaders hope to attach it to the must-pass spending bill due at the end of "
        "the month.",
        events=("advance", "stall", "passed"),
    ),
    Subject(
        topics=("Labor", "Economy"),
        name="rail workers' contract",
        title="Rail Workers' Contract",
        body="Federal mediators",
        what="would give freight rail workers a 22 percent raise over five years and seven "
        "paid sick days",
        supporters="rail unions",
        opponents="the largest freight carriers",
        left_voices="rail workers",
        left_view="say the sick-day provision is overdue for crews who have been on call around "
        "the clock for years",
        left_short="Rail Workers",
        right_voices="shippers and business groups",
        right_view="focus on the risk that a strike would snarl supply chains and push up "
        "prices for shippers and shoppers",
        right_short="Shippers",
        center_view="Supply-chain analysts said a strike would halt about 30 percent of the "
        "country's freight within days.",
        figure="Roughly 115,000 workers are covered by the agreement, which must be ratified by "
        "12 separate unions.",
        next_step="Union members have three weeks to vote, and a strike deadline looms at the "
        "end of the month.",
        events=("stall", "rally", "poll"),
    ),
    Subject(
        topics=("Courts", "Elections"),
        name="court order redrawing the congressional map",
        title="Congressional Map Order",
        body="The state Supreme Court",
        what="would redraw four congressional districts that lower courts found split "
        "minority communities",
        supporters="voting rights groups and minority-party lawmakers",
        opponents="the legislative leaders who drew the current map",
        left_voices="voting rights groups",
        left_view="call the order a long-overdue fix that gives minority voters a fair chance "
        "to elect candidates they choose",
        left_short="Voting Rights Groups",
        right_voices="legislative leaders",
        right_view="say judges are taking over a job the state constitution gives to elected "
        "lawmakers",
        right_short="Lawmakers",
        center_view="Election analysts said the new lines could shift one or two seats, "
        "depending on turnout.",
        figure="The disputed map gave one party 9 of 13 seats in a state it carried by fewer "
        "than 3 points.",
        next_step="Legislators have 45 days to draw a new map before a court-appointed expert "
        "does it for them.",
        events=("report", "rally", "poll"),
    ),
    Subject(
        topics=("Budget", "Congress"),
        name="stopgap spending bill",
        title="Stopgap Spending Bill",
        body="House leaders",
        what="would fund the government at current levels for 45 days while talks on a "
        "full-year budget go on",
        supporters="appropriators in both parties",
        opponents="hard-line conservatives who want spending cuts now",
        left_voices="Democratic leaders",
        left_view="blame a small group of hard-liners for bringing the country to the edge of "
        "a shutdown yet again",
        left_short="Democrats",
        right_voices="fiscal conservatives",
        right_view="say short-term patches dodge hard choices about a national debt that keeps "
        "setting records",
        right_short="Fiscal Hawks",
        center_view="Budget experts noted that this would be the third stopgap measure of the "
        "fiscal year.",
        figure="A shutdown would furlough about 850,000 federal workers and delay some "
        "services within days.",
        next_step="Funding runs out at midnight on Friday if neither chamber acts.",
        events=("stall", "passed", "poll"),
    ),
    Subject(
        topics=("Environment", "Agriculture"),
        name="river water-sharing agreement",
        title="River Water-Sharing Agreement",
        body="Officials from seven western states",
        what="would cut water deliveries from the river by 13 percent over three years, with "
        "the deepest cuts falling on farms",
        supporters="city water agencies and conservation groups",
        opponents="farm irrigation districts and several tribal nations seeking larger shares",
        left_voices="conservation groups",
        left_view="stress that the cuts do not go far enough to protect a river shrunk by two "
        "decades of drought",
        left_short="Conservationists",
        right_voices="farmers and rural officials",
        right_view="focus on the farm families and small towns that stand to lose water they "
        "have relied on for generations",
        right_short="Farmers",
        center_view="Hydrologists said the plan buys time but does not close the gap between "
        "what the river carries and what users are promised.",
        figure="The river supplies water to about 40 million people and 5 million acres of "
        "farmland.",
        next_step="The states must finalize the deal before the federal government imposes "
        "its own cuts next year.",
        events=("advance", "stall", "report"),
    ),
]

# Per event: the story title, its lead sentence and one detail sentence.
EVENTS: dict[str, tuple[str, str, str]] = {
    "advance": (
        "{title} Clears Key Hurdle",
        "{body} moved the {name} forward on {day}, a measure that {what}.",
        "The vote was closer than expected, with two members of the majority breaking ranks.",
    ),
    "blocked": (
        "Judge Pauses {title} Amid Legal Challenge",
        "A judge on {day} temporarily blocked the {name}, which {what}, while a lawsuit "
        "brought by its opponents goes forward.",
        "The judge wrote that the challengers were likely to show the measure had skipped a "
        "required review.",
    ),
    "report": (
        "New Report Sharpens Debate Over {title}",
        "A nonpartisan research office on {day} put new numbers on the {name}, which {what}.",
        "The report's authors said the effects would vary widely by region and income.",
    ),
    "stall": (
        "Talks on {title} Stall as Deadline Nears",
        "Negotiations over the {name}, which {what}, broke down on {day} after a last-minute "
        "compromise fell apart.",
        "Each side accused the other of walking away from the table.",
    ),
    "poll": (
        "Poll Finds Voters Split Over {title}",
        "A poll released on {day} found voters almost evenly divided over the {name}, which "
        "{what}.",
        "Support was strongest among voters under 35 and weakest among those over 65.",
    ),
    "passed": (
        "{title} Wins Final Approval",
        "{body} gave final approval on {day} to the {name}, which {what}.",
        "Officials said the first provisions could take effect within months.",
    ),
    "rally": (
        "Thousands Rally Over {title}",
        "Thousands of people rallied on {day} over the {name}, which {what}, as supporters "
        "and opponents held competing events.",
        "Police said both gatherings were largely peaceful.",
    ),
}

SIDE_EVENT_ANGLES: dict[Side, list[str]] = {
    Side.LEFT: [
        "Several commentators cast the moment as proof that sustained organizing pays off.",
        "Opinion pieces urged readers to contact their representatives before the next step.",
        "Some coverage noted the outsized role of industry lobbying in the fight.",
    ],
    Side.CENTER: [
        "Coverage leaned on documents and data rather than on partisan reaction.",
        "Reports laid out the timeline and the legal questions still open.",
        "Several pieces compared the measure with similar efforts in other states.",
    ],
    Side.RIGHT: [
        "Opinion writers warned that backers were moving too fast for voters to see the costs.",
        "Several pieces highlighted the price tag and asked who would end up paying it.",
        "Some coverage framed the fight as another example of government overreach.",
    ],
}

SIDE_CLOSERS: dict[Side, list[str]] = {
    Side.LEFT: [
        "A few pieces questioned whether the measure goes far enough.",
        "Coverage also featured interviews with families who say they would be affected.",
    ],
    Side.CENTER: [
        "Most stories quoted officials on both sides at similar length.",
        "Fact checks found claims from both camps that overstated the likely effects.",
    ],
    Side.RIGHT: [
        "Several outlets also questioned the independence of the experts backing the plan.",
        "Coverage also featured business owners who say they would bear the burden.",
    ],
}

HEADLINES: dict[Side | None, list[str]] = {
    Side.LEFT: [
        "{left_short} Weigh In as {title} Fight Heats Up",
        "What the {title} Means for Working Families",
        "Opinion: The {title} Debate Is About Who Gets Left Behind",
        "{left_short} See an Opening in the {title} Debate",
        "The {title}, Explained by the People It Affects",
    ],
    Side.CENTER: [
        "What to Know About the {title}",
        "{title}: Five Questions Answered",
        "Explainer: Where the {title} Stands Now",
        "Both Sides Dig In on {title}",
    ],
    Side.RIGHT: [
        "{right_short} Push Back on {title}",
        "The Hidden Costs of the {title}",
        "Opinion: The {title} Debate Is About Who Pays",
        "{right_short} Warn {title} Goes Too Far",
        "Critics Question the Fine Print of the {title}",
        "Who Really Wins Under the {title}?",
    ],
    None: [
        "Local Reaction to the {title}",
        "{title}: What It Could Mean Around Here",
    ],
}

FAQ_TEMPLATES: list[tuple[str, str]] = [
    ("What would the {name} do?", "It {what}."),
    ("Who supports it, and who is against it?", "{Supporters} support it. {Opponents} oppose it."),
    ("Why is it in the news now?", "{lead}"),
    ("What do the numbers show?", "{figure}"),
    ("What happens next?", "{next_step}"),
]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _words(*parts: str) -> int:
    return sum(len(p.split()) for p in parts)


def _fit(required: list[str], optional: list[str], low: int, high: int) -> str:
    """The required sentences plus as many optional ones as fit, aiming for [low, high]."""
    sentences = list(required)
    for sentence in optional:
        if _words(*sentences, sentence) <= high:
            sentences.append(sentence)
    text = " ".join(sentences)
    assert low <= _words(text) <= high, (text, _words(text))
    return text


def _profiles(rng: random.Random) -> list[str]:
    """Coverage shapes: several blindspots each side, some with no Center at all."""
    profiles = ["left_blindspot"] * 6 + ["right_blindspot"] * 6 + ["no_center"] * 3
    profiles += ["balanced"] * (DEMO_STORY_COUNT - len(profiles))
    rng.shuffle(profiles)
    return profiles


_BIAS_OF_SIDE = {Side.LEFT: Bias.LEFT, Side.CENTER: Bias.CENTER, Side.RIGHT: Bias.RIGHT}


def _side_counts(rng: random.Random, profile: str) -> dict[Side, int]:
    """Distinct outlets per side for a profile, checked against the default blindspot rule."""
    rule = BlindspotRule()
    expected = {"left_blindspot": Side.LEFT, "right_blindspot": Side.RIGHT}.get(profile)
    while True:
        if profile == "balanced":
            counts = {
                Side.LEFT: rng.randint(1, 4),
                Side.CENTER: rng.randint(1, 3),
                Side.RIGHT: rng.randint(1, 4),
            }
        elif profile == "no_center":
            counts = {Side.LEFT: rng.randint(2, 4), Side.CENTER: 0, Side.RIGHT: rng.randint(2, 4)}
        else:
            strong, weak = (
                (Side.RIGHT, Side.LEFT) if profile == "left_blindspot" else (Side.LEFT, Side.RIGHT)
            )
            counts = {strong: rng.randint(3, 6), Side.CENTER: rng.randint(1, 3)}
            counts[weak] = rng.choice([0, 0, 1])
        ratings = {
            f"{side}-{i}": _BIAS_OF_SIDE[side] for side, n in counts.items() for i in range(n)
        }
        if coverage_of_ratings(ratings, rule).blindspot == expected:
            return counts


def _story(
    rng: random.Random,
    number: int,
    subject: Subject,
    event: str,
    profile: str,
    published: datetime,
    pools: dict[Side | None, list[tuple[str, str, Bias, Factuality]]],
) -> dict[str, Any]:
    title_template, lead_template, detail = EVENTS[event]
    day = published.strftime("%A")
    title = title_template.format(title=subject.title)
    lead = lead_template.format(body=subject.body, name=subject.name, what=subject.what, day=day)
    lead = _cap(lead)
    backers = f"The measure is backed by {subject.supporters} and opposed by {subject.opponents}."
    # Not every story carries every sentence, so lengths vary the way real summaries do.
    extras = [x for x in (detail, subject.next_step, subject.center_view) if rng.random() < 0.7]
    overview = _fit([lead, backers, subject.figure], extras, 60, 120)

    analyses: dict[Side, str | None] = {
        Side.LEFT: _fit(
            [
                f"Left-leaning outlets framed the story around {subject.left_voices}, who "
                f"{subject.left_view}.",
                rng.choice(SIDE_EVENT_ANGLES[Side.LEFT]),
            ],
            [rng.choice(SIDE_CLOSERS[Side.LEFT])],
            40,
            90,
        ),
        Side.CENTER: _fit(
            [
                f"Outlets rated center focused on the details: the {subject.name} {subject.what}.",
                subject.center_view,
            ],
            [rng.choice(SIDE_EVENT_ANGLES[Side.CENTER]), rng.choice(SIDE_CLOSERS[Side.CENTER])],
            40,
            90,
        ),
        Side.RIGHT: _fit(
            [
                f"Right-leaning outlets emphasized {subject.right_voices}, who "
                f"{subject.right_view}.",
                rng.choice(SIDE_EVENT_ANGLES[Side.RIGHT]),
            ],
            [rng.choice(SIDE_CLOSERS[Side.RIGHT])],
            40,
            90,
        ),
    }

    counts = _side_counts(rng, profile)
    # A side with no outlets has no analysis, like the seed page's missing viewpoint.
    for side, n in counts.items():
        if n == 0:
            analyses[side] = None
    if profile == "balanced" and rng.random() < 0.12:
        analyses[rng.choice(list(Side))] = None

    outlets: list[tuple[Side | None, tuple[str, str, Bias, Factuality]]] = []
    for side, n in counts.items():
        outlets += [(side, o) for o in rng.sample(pools[side], n)]
    if rng.random() < 0.35:
        outlets.append((None, rng.choice(pools[None])))
    if rng.random() < 0.25 and len(outlets) < 12:
        outlets.append(rng.choice(outlets))  # a second article from the same outlet
    rng.shuffle(outlets)

    names = {
        "title": subject.title,
        "left_short": subject.left_short,
        "right_short": subject.right_short,
    }
    used = set()
    articles = []
    for position, (side, (slug, _name, _bias, _fact)) in enumerate(outlets):
        options = [title] + [h.format(**names) for h in HEADLINES[side]]
        free = [h for h in options if h not in used] or [f"{title}: Latest ({position + 1})"]
        headline = rng.choice(free)
        used.add(headline)
        section = slugify(subject.topics[0], 40)
        url = f"https://{slug}.example/{section}/{slugify(headline, 60)}-{rng.randrange(16**6):06x}"
        # The newest article is the story's time; the others came out in the hours before.
        when = published - timedelta(minutes=0 if position == 0 else rng.randint(20, 14 * 60))
        articles.append(
            {"outlet": slug, "url": url, "headline": headline, "published_at": when.isoformat()}
        )

    faq_values = {
        "name": subject.name,
        "what": subject.what,
        "Supporters": _cap(subject.supporters),
        "Opponents": _cap(subject.opponents),
        "lead": lead,
        "figure": subject.figure,
        "next_step": subject.next_step,
    }
    chosen = [0, 1] + sorted(rng.sample(range(2, len(FAQ_TEMPLATES)), rng.randint(0, 3)))
    faq = [
        {
            "question": FAQ_TEMPLATES[i][0].format(**faq_values),
            "answer": FAQ_TEMPLATES[i][1].format(**faq_values),
        }
        for i in chosen
    ]

    return {
        "external_id": f"demo-{number:03d}",
        "title": title,
        "overview": overview,
        "analysis_left": analyses[Side.LEFT],
        "analysis_center": analyses[Side.CENTER],
        "analysis_right": analyses[Side.RIGHT],
        "faq": faq,
        "topics": list(subject.topics),
        "articles": articles,
    }


def demo_document(now: datetime | None = None) -> dict[str, Any]:
    """The demo data in the import format; the same text for any `now`, only times move."""
    anchor = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(DEMO_SEED)
    pools: dict[Side | None, list[tuple[str, str, Bias, Factuality]]] = {
        None: [o for o in OUTLETS if o[2] == Bias.UNRATED]
    }
    for side in Side:
        pools[side] = [o for o in OUTLETS if o[2] != Bias.UNRATED and side_of(o[2]) == side]

    events = [(subject, event) for subject in SUBJECTS for event in subject.events]
    rng.shuffle(events)
    profiles = _profiles(rng)
    stories = []
    for i in range(DEMO_STORY_COUNT):
        subject, event = events[i]
        # Newest first, one every ~2.7 hours, all within the last DEMO_DAYS days.
        published = anchor - timedelta(minutes=30 + i * 160 + rng.randint(0, 60))
        stories.append(_story(rng, i + 1, subject, event, profiles[i], published, pools))
    return {
        "outlets": [
            {
                "slug": slug,
                "name": name,
                "url": f"https://{slug}.example/",
                "bias": bias.value,
                "factuality": factuality.value,
            }
            for slug, name, bias, factuality in OUTLETS
        ],
        "stories": stories,
    }


def load_demo(session: Session, *, now: datetime | None = None) -> ImportReport:
    """Import the demo outlets and stories. Flushes; the caller commits."""
    report = import_stories(session, demo_document(now), now=now)
    if report.errors:  # the demo is ours: a rejection here is a bug, not bad input
        raise RuntimeError(f"demo data rejected: {report.errors[0]}")
    return report
