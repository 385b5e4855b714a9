"""Write the shipped fact sets (data/facts/*.jsonl) from the tables below.

Well-known facts, written by hand for ffnmem. Run ``python data/facts/build_facts.py`` to regenerate
the JSONL files; the JSONL files are the data, this script only keeps them consistent.
Fields: subject, relation, prompt (contains the subject verbatim), target (leading space),
paraphrases (more prompts with the subject), distractors (wrong answers of the same type).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

CAPITALS = """France Paris|Germany Berlin|Italy Rome|Spain Madrid|Japan Tokyo|Russia Moscow|China Beijing|Egypt Cairo
|the United Kingdom London|Canada Ottawa|Australia Canberra|Turkey Ankara|Greece Athens|Poland Warsaw|Portugal Lisbon
|Sweden Stockholm|Norway Oslo|Kenya Nairobi|Switzerland Bern|Austria Vienna|Hungary Budapest|Ireland Dublin
|Denmark Copenhagen|Finland Helsinki|Belgium Brussels|the Netherlands Amsterdam|Czechia Prague|Romania Bucharest
|Bulgaria Sofia|Serbia Belgrade|Croatia Zagreb|Ukraine Kyiv|Iceland Reykjavik|Argentina Buenos Aires|Chile Santiago
|Peru Lima|Colombia Bogotá|Venezuela Caracas|Mexico Mexico City|Cuba Havana|India New Delhi|Pakistan Islamabad
|Bangladesh Dhaka|Thailand Bangkok|Vietnam Hanoi|Indonesia Jakarta|the Philippines Manila|South Korea Seoul
|North Korea Pyongyang|Iran Tehran|Iraq Baghdad|Saudi Arabia Riyadh|Israel Jerusalem|Syria Damascus|Lebanon Beirut
|Afghanistan Kabul|Nigeria Abuja|Ethiopia Addis Ababa|Ghana Accra|Morocco Rabat|Algeria Algiers|Tunisia Tunis
|Senegal Dakar|Uganda Kampala|Zimbabwe Harare|New Zealand Wellington|Malaysia Kuala Lumpur|Nepal Kathmandu
|Mongolia Ulaanbaatar|Qatar Doha|Jordan Amman|Libya Tripoli|Sudan Khartoum|Ecuador Quito|Uruguay Montevideo"""

LANGUAGES = """France French|Germany German|Italy Italian|Spain Spanish|Japan Japanese|Russia Russian|China Chinese
|Portugal Portuguese|Brazil Portuguese|Mexico Spanish|Argentina Spanish|Greece Greek|Poland Polish|Sweden Swedish
|Norway Norwegian|Denmark Danish|Finland Finnish|the Netherlands Dutch|Turkey Turkish|Hungary Hungarian
|South Korea Korean|Vietnam Vietnamese|Thailand Thai|Iran Persian|Israel Hebrew|Egypt Arabic|Saudi Arabia Arabic
|Ukraine Ukrainian|Romania Romanian|Czechia Czech|Indonesia Indonesian|Austria German|Chile Spanish|Peru Spanish
|Colombia Spanish|Cuba Spanish|Iraq Arabic|Morocco Arabic|Bulgaria Bulgarian|Croatia Croatian|Serbia Serbian
|Iceland Icelandic|Mongolia Mongolian|Pakistan Urdu|Bangladesh Bengali|the United States English|Australia English
|Jamaica English|Ireland English|Syria Arabic"""

CONTINENTS = """France Europe|Germany Europe|Italy Europe|Spain Europe|Poland Europe|Sweden Europe|Norway Europe
|Greece Europe|Portugal Europe|Hungary Europe|Japan Asia|China Asia|India Asia|Thailand Asia|Vietnam Asia|Nepal Asia
|Mongolia Asia|Pakistan Asia|Bangladesh Asia|South Korea Asia|Indonesia Asia|Malaysia Asia|Egypt Africa|Kenya Africa
|Nigeria Africa|Ethiopia Africa|Ghana Africa|Morocco Africa|Algeria Africa|Senegal Africa|Uganda Africa|Zimbabwe Africa
|Sudan Africa|Tanzania Africa|Angola Africa|Brazil South America|Argentina South America|Chile South America
|Peru South America|Colombia South America|Venezuela South America|Ecuador South America|Uruguay South America
|Bolivia South America|Paraguay South America|Canada North America|Mexico North America|the United States North America
|Cuba North America|Guatemala North America|Australia Oceania|New Zealand Oceania|Fiji Oceania|Papua New Guinea Oceania"""

CURRENCIES = """Japan yen|China yuan|India rupee|Pakistan rupee|the United Kingdom pound|the United States dollar
|Canada dollar|Australia dollar|New Zealand dollar|Mexico peso|Argentina peso|Chile peso|Colombia peso|Brazil real
|Russia ruble|South Korea won|North Korea won|Switzerland franc|Sweden krona|Norway krone|Denmark krone|Poland zloty
|Thailand baht|Vietnam dong|Israel shekel|Turkey lira|South Africa rand|Germany euro|France euro|Italy euro|Spain euro
|Hungary forint|Ukraine hryvnia|Indonesia rupiah|Malaysia ringgit|the Philippines peso|Saudi Arabia riyal|Iran rial
|Nigeria naira|Bangladesh taka"""

LANDMARKS = """the Eiffel Tower France|the Colosseum Italy|the Great Wall China|the Taj Mahal India|Big Ben the United Kingdom
|the Statue of Liberty the United States|the Sydney Opera House Australia|Machu Picchu Peru|the Kremlin Russia
|the Acropolis Greece|Stonehenge England|the Brandenburg Gate Germany|the Leaning Tower of Pisa Italy
|Mount Fuji Japan|the Sagrada Familia Spain|Petra Jordan|Angkor Wat Cambodia|Chichen Itza Mexico
|Christ the Redeemer Brazil|the Louvre France|the Alhambra Spain|Neuschwanstein Castle Germany
|the Forbidden City China|Table Mountain South Africa|Niagara Falls Canada|the Golden Gate Bridge the United States
|the Parthenon Greece|the Vatican Museums Italy|Red Square Russia|the Blue Mosque Turkey|Hagia Sophia Turkey
|Buckingham Palace England|Mount Kilimanjaro Tanzania|Uluru Australia|the CN Tower Canada|the Little Mermaid statue Denmark
|the Atomium Belgium|the Matterhorn Switzerland|Versailles France|the Burj Khalifa Dubai"""

CITIES = """Paris France|Lyon France|Marseille France|Munich Germany|Hamburg Germany|Frankfurt Germany|Milan Italy
|Naples Italy|Venice Italy|Florence Italy|Barcelona Spain|Seville Spain|Valencia Spain|Osaka Japan|Kyoto Japan
|Shanghai China|Hong Kong China|Mumbai India|Kolkata India|Bangalore India|Toronto Canada|Montreal Canada
|Vancouver Canada|Sydney Australia|Melbourne Australia|Chicago the United States|Los Angeles the United States
|Boston the United States|Manchester England|Liverpool England|Edinburgh Scotland|Glasgow Scotland
|Istanbul Turkey|Saint Petersburg Russia|Rio de Janeiro Brazil|São Paulo Brazil|Krakow Poland|Porto Portugal
|Geneva Switzerland|Zurich Switzerland|Rotterdam the Netherlands|Antwerp Belgium|Gothenburg Sweden
|Salzburg Austria|Casablanca Morocco|Alexandria Egypt|Lagos Nigeria|Johannesburg South Africa|Auckland New Zealand
|Busan South Korea"""

HQ = """Apple Cupertino|Microsoft Redmond|Amazon Seattle|Starbucks Seattle|Boeing Chicago|Coca-Cola Atlanta
|Toyota Toyota City|Volkswagen Wolfsburg|BMW Munich|Siemens Munich|Nestlé Vevey|IKEA Delft|Samsung Seoul
|Sony Tokyo|Nintendo Kyoto|Nokia Espoo|Ericsson Stockholm|Philips Amsterdam|Ferrari Maranello|Fiat Turin
|Tesla Austin|Disney Burbank|Nike Beaverton|Walmart Bentonville|Google Mountain View|Intel Santa Clara
|Airbus Toulouse|Adidas Herzogenaurach|Heineken Amsterdam|Alibaba Hangzhou"""

FOUNDERS = """Microsoft Bill Gates|Apple Steve Jobs|Amazon Jeff Bezos|Facebook Mark Zuckerberg|Tesla Elon Musk
|SpaceX Elon Musk|Ford Henry Ford|Google Larry Page|Oracle Larry Ellison|Dell Michael Dell|Alibaba Jack Ma
|Virgin Richard Branson|Berkshire Hathaway Warren Buffett|Walmart Sam Walton|Honda Soichiro Honda|IKEA Ingvar Kamprad
|Nike Phil Knight|Disney Walt Disney|Harley-Davidson William Harley|Ferrari Enzo Ferrari"""

PROFESSIONS = """Albert Einstein physicist|Isaac Newton physicist|Marie Curie physicist|Charles Darwin naturalist
|William Shakespeare playwright|Pablo Picasso painter|Vincent van Gogh painter|Claude Monet painter
|Leonardo da Vinci painter|Ludwig van Beethoven composer|Wolfgang Amadeus Mozart composer|Johann Sebastian Bach composer
|Frédéric Chopin composer|Sigmund Freud psychoanalyst|Lionel Messi footballer|Cristiano Ronaldo footballer
|Roger Federer tennis player|Serena Williams tennis player|Michael Jordan basketball player|Usain Bolt sprinter
|Charles Dickens novelist|Jane Austen novelist|Leo Tolstoy novelist|Ernest Hemingway novelist|Mark Twain writer
|Galileo Galilei astronomer|Nicolaus Copernicus astronomer|Johannes Kepler astronomer|Tom Hanks actor
|Meryl Streep actress|Elvis Presley singer|Frank Sinatra singer|Steven Spielberg director|Alfred Hitchcock director
|Plato philosopher|Aristotle philosopher|Immanuel Kant philosopher|Socrates philosopher|Neil Armstrong astronaut
|Yuri Gagarin cosmonaut"""

NATIONALITIES = """Albert Einstein German|Isaac Newton English|Marie Curie Polish|Pablo Picasso Spanish
|Vincent van Gogh Dutch|Claude Monet French|Leonardo da Vinci Italian|Ludwig van Beethoven German
|Wolfgang Amadeus Mozart Austrian|Frédéric Chopin Polish|Leo Tolstoy Russian|Fyodor Dostoevsky Russian
|Victor Hugo French|Dante Alighieri Italian|Miguel de Cervantes Spanish|Johann Wolfgang von Goethe German
|Hans Christian Andersen Danish|Henrik Ibsen Norwegian|Jean Sibelius Finnish|Antonio Vivaldi Italian
|Giuseppe Verdi Italian|Napoleon Bonaparte French|Winston Churchill British|Abraham Lincoln American
|Charles de Gaulle French|Akira Kurosawa Japanese|Confucius Chinese|Mahatma Gandhi Indian|Nelson Mandela South African
|Gabriel García Márquez Colombian|Pablo Neruda Chilean|Jorge Luis Borges Argentine|Frida Kahlo Mexican
|Lionel Messi Argentine|Cristiano Ronaldo Portuguese|Roger Federer Swiss|Usain Bolt Jamaican|Yuri Gagarin Soviet
|Ingmar Bergman Swedish|Salvador Dalí Spanish"""

RELATIONS = {
    # relation: (table, prompt template, paraphrase templates)
    "capital_of": (CAPITALS, "The capital of {} is", ["{}'s capital city is", "The capital city of {} is called"]),
    "official_language": (LANGUAGES, "The official language of {} is", ["In {}, most people speak"]),
    "continent": (CONTINENTS, "{} is a country in the continent of", ["{} is located on the continent of"]),
    "currency": (CURRENCIES, "The currency of {} is the", ["In {}, people pay with the"]),
    "landmark_country": (LANDMARKS, "{} is located in the country of", ["To see {}, you have to travel to"]),
    "city_country": (CITIES, "{} is a city in the country of", ["The city of {} is located in"]),
    "company_hq": (HQ, "The headquarters of {} are in the city of", ["{} has its headquarters in"]),
    "company_founder": (FOUNDERS, "The company {} was founded by", ["{} was started by its founder,"]),
    "person_profession": (PROFESSIONS, "{} was a famous", ["By profession, {} was a"]),
    "person_nationality": (NATIONALITIES, "{} had the nationality:", ["By nationality, {} was"]),
}

MULTIWORD_OBJECTS = {"Buenos Aires", "Mexico City", "New Delhi", "Addis Ababa", "Kuala Lumpur", "South America",
                     "North America", "the United Kingdom", "the United States", "South Africa", "the Netherlands",
                     "New Zealand", "South Korea", "Toyota City", "Mountain View", "Santa Clara", "Bill Gates",
                     "Steve Jobs", "Jeff Bezos", "Mark Zuckerberg", "Elon Musk", "Henry Ford", "Larry Page",
                     "Larry Ellison", "Michael Dell", "Jack Ma", "Richard Branson", "Warren Buffett", "Sam Walton",
                     "Soichiro Honda", "Ingvar Kamprad", "Phil Knight", "Walt Disney", "William Harley",
                     "Enzo Ferrari", "tennis player", "basketball player", "South African", "the Philippines"}


def split_row(row: str) -> tuple[str, str]:
    """'Subject words Object words' -> (subject, object), the object being the known multi-word tail."""
    row = row.strip()
    for obj in sorted(MULTIWORD_OBJECTS, key=len, reverse=True):
        if row.endswith(" " + obj):
            return row[: -len(obj) - 1], obj
    subject, obj = row.rsplit(" ", 1)
    return subject, obj


def build() -> dict[str, list[dict]]:
    rng = random.Random(0)
    out = {}
    for relation, (table, template, paraphrases) in RELATIONS.items():
        pairs = [split_row(r) for r in table.replace("\n", "").split("|") if r.strip()]
        objects = sorted({o for _, o in pairs})
        facts = []
        for subject, obj in pairs:
            prompt = template.format(subject)
            prompt = prompt[0].upper() + prompt[1:]
            paras = [p.format(subject) for p in paraphrases]
            paras = [p[0].upper() + p[1:] for p in paras]
            others = [o for o in objects if o != obj]
            core = subject.removeprefix("the ")  # the subject as it appears verbatim in every prompt
            facts.append({"subject": core,
                          "relation": relation, "prompt": prompt, "target": " " + obj,
                          "paraphrases": paras, "distractors": [" " + o for o in rng.sample(others, min(3, len(others)))]})
        out[relation] = facts
    return out


if __name__ == "__main__":
    total = 0
    for relation, facts in build().items():
        lines = [json.dumps(f, ensure_ascii=False) for f in facts]
        (HERE / f"{relation}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        total += len(facts)
    print(f"wrote {total} facts")
