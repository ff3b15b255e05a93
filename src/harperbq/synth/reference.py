"""Reference data the synthesizer draws from: ports, vessel types, flag states.

Port coordinates are where ships really lie, on the water: each port's `path` starts at a berth
next to its container terminal and ends at an entry point offshore, with every leg checked against
a 1 km land mask (`tests/unit/test_synth_reference.py`). Where a terminal sits on a river narrower
than the mask resolves (Hamburg, Antwerp, Savannah, Vancouver), the berth is the nearest point the
mask sees as water, a few km downstream; `docs/synthesizer.md` lists the offsets.
"""

from dataclasses import dataclass

LatLon = tuple[float, float]


@dataclass(frozen=True)
class Port:
    code: str  # UN/LOCODE
    name: str
    country: str  # ISO 3166-1 alpha-2
    weight: int  # share of port calls, relative
    path: tuple[LatLon, ...]  # berth first, then the approach, ending at the offshore entry point

    @property
    def berth(self) -> LatLon:
        return self.path[0]

    @property
    def entry(self) -> LatLon:
        return self.path[-1]


PORTS: tuple[Port, ...] = (
    Port("SGSIN", "Singapore", "SG", 10,
         ((1.2625, 103.7708), (1.2292, 103.7875), (1.2042, 103.7792), (1.1792, 103.7875))),
    Port("CNSHA", "Shanghai", "CN", 9,
         ((30.6208, 122.0625), (30.6125, 122.0708), (30.6125, 122.1292), (30.6074, 122.1324),
          (30.6042, 122.1375), (30.55, 122.2))),
    Port("HKHKG", "Hong Kong", "HK", 7,
         ((22.3375, 114.1208), (22.3208, 114.1042), (22.3208, 114.0958), (22.3542, 114.0625),
          (22.3542, 114.0542), (22.3458, 114.0458), (22.3615, 113.8705))),
    Port("KRPUS", "Busan", "KR", 6,
         ((35.0792, 128.8042), (34.9958, 128.7875), (34.9875, 128.7958))),
    Port("CNCAN", "Guangzhou", "CN", 5, ((22.6875, 113.6625), (22.45, 113.8))),
    Port("CNTAO", "Qingdao", "CN", 5, ((36.0208, 120.2125), (36.0375, 120.2625))),
    Port("JPTYO", "Tokyo", "JP", 4,
         ((35.6042, 139.7792), (35.5792, 139.7958), (35.5292, 139.8125), (35.45, 139.78))),
    Port("MYPKG", "Port Klang", "MY", 4,
         ((2.9458, 101.3042), (2.9375, 101.2958), (2.9292, 101.2958), (2.9208, 101.2875),
          (2.9125, 101.2875), (2.9042, 101.2792), (2.8958, 101.2458), (3.2, 100.6))),
    Port("TWKHH", "Kaohsiung", "TW", 3, ((22.5625, 120.2958), (22.3368, 120.2893))),
    Port("CNTSN", "Tianjin", "CN", 4, ((38.9792, 117.8042), (38.95, 117.95))),
    Port("NLRTM", "Rotterdam", "NL", 7, ((51.9542, 4.0208), (52.0, 3.85))),
    Port("BEANR", "Antwerp", "BE", 5,
         ((51.3542, 4.2375), (51.4042, 4.1875), (51.3958, 4.1792), (51.3958, 4.1292),
          (51.4208, 3.9292), (51.3958, 3.9042), (51.3875, 3.8292), (51.42, 3.45))),
    Port("DEHAM", "Hamburg", "DE", 4,
         ((53.5458, 9.8292), (53.5625, 9.7458), (53.5708, 9.6792), (53.6125, 9.5708),
          (53.7416, 9.4333), (53.8042, 9.3625), (53.8708, 9.2958), (53.8843, 9.1573),
          (53.8958, 9.0208), (53.8875, 8.9792), (53.9792, 8.4125), (53.9542, 8.3875))),
    Port("ESVLC", "Valencia", "ES", 3, ((39.4375, -0.3125), (39.42, -0.25))),
    Port("GRPIR", "Piraeus", "GR", 3, ((37.9542, 23.5792), (37.9042, 23.5625))),
    Port("GBFXT", "Felixstowe", "GB", 2, ((51.9542, 1.3375), (51.9, 1.45))),
    Port("AEJEA", "Dubai/Jebel Ali", "AE", 6, ((25.0042, 55.0542), (25.08, 54.95))),
    Port("SAJED", "Jeddah", "SA", 3, ((21.4708, 39.1625), (21.45, 39.05))),
    Port("USLAX", "Los Angeles", "US", 6, ((33.7375, -118.2458), (33.68, -118.25))),
    Port("USLGB", "Long Beach", "US", 5, ((33.7458, -118.2125), (33.7, -118.15))),
    Port("USNYC", "New York/New Jersey", "US", 5,
         ((40.6542, -74.0792), (40.6542, -74.0708), (40.6458, -74.0625), (40.5792, -74.0208),
          (40.5625, -74.0042), (40.47, -73.9))),
    Port("USSAV", "Savannah", "US", 3, ((32.0458, -80.9042), (32.0208, -80.7625), (31.95, -80.7))),
    Port("USHOU", "Houston", "US", 4,
         ((29.6708, -94.9792), (29.5208, -94.9292), (29.5083, -94.9157), (29.4958, -94.9042),
          (29.3708, -94.7875), (29.3615, -94.7801), (29.3542, -94.7708), (29.3375, -94.7042),
          (29.28, -94.65))),
    Port("CAVAN", "Vancouver", "CA", 3,
         ((49.2875, -123.1458), (49.2875, -123.3125), (49.25, -123.35))),
    Port("BRSSZ", "Santos", "BR", 3,
         ((-23.9958, -46.3458), (-24.0208, -46.3458), (-24.0625, -46.3042))),
    Port("MXZLO", "Manzanillo", "MX", 2,
         ((19.0625, -104.3042), (19.0292, -104.4708), (19.0, -104.5))),
    Port("ZACPT", "Cape Town", "ZA", 2, ((-33.9042, 18.4375), (-33.85, 18.4))),
    Port("ZADUR", "Durban", "ZA", 2, ((-29.8458, 31.0458), (-29.9, 31.1))),
    Port("NGLOS", "Lagos", "NG", 2, ((6.3958, 3.3625), (6.3, 3.4))),
)  # fmt: skip


@dataclass(frozen=True)
class VesselType:
    code: str  # the original's vocabulary (vessel_type column)
    share: float  # fraction of the fleet
    speed_kn: tuple[float, float]  # sea speed range
    length_m: tuple[float, float]
    draft_m: tuple[float, float]  # design (maximum) draught
    length_beam: tuple[float, float]  # L/B ratio range
    max_beam_m: float
    gt_coef: float  # gross tonnage ~ coef * L * B * draft
    dwt_coef: float  # deadweight ~ coef * L * B * draft
    berth_h: tuple[float, float]  # time alongside per call
    anchor_p: float  # probability of waiting at anchor before berthing
    anchor_h: tuple[float, float]  # anchor wait range
    range_nm: float  # destination choice decays with distance on this scale
    heading_missing: float  # share of vessels without a heading sensor (heading 511)


VESSEL_TYPES: tuple[VesselType, ...] = (
    VesselType("CONTAINER", 0.35, (18, 25), (200, 400), (10, 16), (6.3, 7.6), 61.5,
               0.60, 0.55, (14, 40), 0.30, (2, 30), 12000, 0.01),
    VesselType("BULK_CARRIER", 0.25, (12, 16), (150, 300), (8, 14), (5.8, 6.8), 50.0,
               0.48, 0.86, (48, 120), 0.60, (12, 120), 8000, 0.02),
    VesselType("TANKER", 0.20, (13, 17), (180, 330), (10, 18), (5.4, 6.3), 60.0,
               0.45, 0.84, (24, 60), 0.50, (6, 72), 7000, 0.02),
    VesselType("CARGO", 0.10, (14, 19), (120, 250), (7, 12), (6.2, 7.2), 40.0,
               0.47, 0.62, (24, 72), 0.40, (4, 48), 3000, 0.03),
    VesselType("PASSENGER", 0.05, (20, 30), (200, 360), (7, 9), (6.8, 8.5), 48.0,
               1.50, 0.10, (8, 14), 0.05, (1, 4), 1500, 0.01),
    VesselType("FISHING", 0.05, (8, 14), (30, 100), (3, 6), (4.2, 5.5), 20.0,
               0.42, 0.33, (12, 72), 0.0, (0, 0), 800, 0.20),
)  # fmt: skip
FISHING = next(i for i, t in enumerate(VESSEL_TYPES) if t.code == "FISHING")


@dataclass(frozen=True)
class Flag:
    code: str  # ISO 3166-1 alpha-2 (flag column)
    name: str
    mids: tuple[int, ...]  # ITU Maritime Identification Digits: first 3 digits of the MMSI
    callsign_prefix: str  # from the ITU call-sign series of the state
    weight: float  # share of the world fleet registered there (merchant ships), relative


FLAGS: tuple[Flag, ...] = (
    Flag("PA", "Panama", (351, 352, 353, 354, 355, 356, 357, 370, 371, 372, 373), "3E", 16),
    Flag("LR", "Liberia", (636, 637), "A8", 16),
    Flag("MH", "Marshall Islands", (538,), "V7", 12),
    Flag("HK", "Hong Kong", (477,), "VR", 8),
    Flag("SG", "Singapore", (563, 564, 565, 566), "9V", 7),
    Flag("MT", "Malta", (215, 229, 248, 249, 256), "9H", 5),
    Flag("BS", "Bahamas", (308, 309, 311), "C6", 4),
    Flag("CN", "China", (412, 413, 414), "BQ", 5),
    Flag("GR", "Greece", (237, 239, 240, 241), "SV", 4),
    Flag("JP", "Japan", (431, 432), "JD", 3),
    Flag("CY", "Cyprus", (209, 210, 212), "5B", 2),
    Flag("PT", "Portugal", (255, 263), "CQ", 2),
    Flag("NO", "Norway", (257, 258, 259), "LA", 2),
    Flag("DK", "Denmark", (219, 220), "OZ", 2),
    Flag("GB", "United Kingdom", (232, 233, 234, 235), "MG", 2),
    Flag("KR", "South Korea", (440, 441), "D7", 2),
    Flag("DE", "Germany", (211, 218), "DA", 1),
    Flag("IT", "Italy", (247,), "IB", 1),
    Flag("AG", "Antigua and Barbuda", (304, 305), "V2", 1),
    Flag("US", "United States", (338, 366, 367, 368, 369), "WD", 1),
    Flag("NL", "Netherlands", (244, 245, 246), "PD", 1),
    Flag("BE", "Belgium", (205,), "OO", 0.5),
    # Flags of port states, used by fishing vessels registered where they are based.
    Flag("ES", "Spain", (224, 225), "EA", 0.5),
    Flag("MY", "Malaysia", (533,), "9M", 0.5),
    Flag("TW", "Taiwan", (416,), "BV", 0.3),
    Flag("AE", "United Arab Emirates", (470, 471), "A6", 0.3),
    Flag("SA", "Saudi Arabia", (403,), "HZ", 0.2),
    Flag("CA", "Canada", (316,), "CF", 0.2),
    Flag("BR", "Brazil", (710,), "PP", 0.2),
    Flag("MX", "Mexico", (345,), "XC", 0.1),
    Flag("ZA", "South Africa", (601,), "ZS", 0.1),
    Flag("NG", "Nigeria", (657,), "5N", 0.1),
)
FLAG_INDEX = {flag.code: i for i, flag in enumerate(FLAGS)}

# AIS navigational status: code -> the text used in `status` columns.
NAV_STATUS = {
    0: "UNDERWAY_USING_ENGINE",
    1: "AT_ANCHOR",
    5: "MOORED",
    7: "ENGAGED_IN_FISHING",
}
UNDER_WAY = 0
AT_ANCHOR = 1
MOORED = 5
FISHING_STATUS = 7
HEADING_NOT_AVAILABLE = 511

# Port event vocabulary, index = code stored in the schedule (0 = no event).
EVENT_TYPES = ("", "ARRIVAL", "BERTHED", "DEPARTURE", "ANCHORED", "UNDERWAY")
ARRIVAL, BERTHED, DEPARTURE, ANCHORED, UNDERWAY = 1, 2, 3, 4, 5

NAME_WORDS = (
    "OCEAN", "PACIFIC", "ATLANTIC", "NORDIC", "GOLDEN", "SILVER", "CORAL", "AURORA", "POLAR",
    "EASTERN", "WESTERN", "SOUTHERN", "NORTHERN", "GRAND", "BRIGHT", "NOBLE", "ROYAL", "CRYSTAL",
    "EMERALD", "SAPPHIRE", "AMBER", "IRON", "STEEL", "SWIFT", "BLUE", "GREEN", "RED", "STAR",
    "SEA", "BAY", "CAPE", "HARBOUR", "ISLAND", "DELTA", "SUMMIT", "LUCKY", "GLOBAL", "UNITED",
)  # fmt: skip
NAME_NOUNS = (
    "PIONEER", "VOYAGER", "EXPLORER", "SPIRIT", "FORTUNE", "HARMONY", "LIBERTY", "TRADER",
    "NAVIGATOR", "MERIDIAN", "HORIZON", "CRUSADER", "GUARDIAN", "PRIDE", "GLORY", "DAWN", "WAVE",
    "TIDE", "BREEZE", "PHOENIX", "FALCON", "EAGLE", "DOLPHIN", "ORCA", "MARLIN", "ALBATROSS",
    "CONDOR", "LION", "TIGER", "JADE", "PEARL", "LOTUS", "ORCHID", "MAGNOLIA", "CEDAR", "ATLAS",
    "TITAN", "ORION", "VEGA", "SIRIUS", "LYRA", "CASTOR", "POLLUX", "ANTARES", "DRAGON", "EXPRESS",
    "PROSPERITY", "VENTURE", "ENDEAVOUR", "PROGRESS", "UNITY", "VICTORY", "COURAGE", "CHAMPION",
)  # fmt: skip
NAME_SUFFIXES = ("", "", "", "", "II", "III", "IV", "V", "VII", "IX")
OWNERS = (
    "Blue Anchor Shipping", "Meridian Maritime", "Northgate Lines", "Coral Bay Carriers",
    "Oceanic Bulk Holdings", "Harbourline Tankers", "Pacific Crest Shipping", "Silverwake Marine",
    "Atlas Ship Management", "Eastwind Navigation", "Seabridge Logistics", "Polaris Tankers",
    "Greenfield Bulk", "Southern Cross Lines", "Tidewater Holdings", "Orion Ship Management",
    "Goldcoast Ferries", "Aurora Cruises", "Lighthouse Carriers", "Redstone Maritime",
)  # fmt: skip
FISHING_OWNERS = (
    "Coastal Fisheries Co", "Deepwater Catch Ltd", "Harbour Trawlers", "Northsea Fishing Group",
    "Bluefin Cooperative", "Seaharvest Fishing",
)  # fmt: skip

EARTH_RADIUS_NM = 3440.065
