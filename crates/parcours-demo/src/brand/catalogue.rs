//! The brand.

pub(crate) const BRAND: &str = "Maison Azur";
/// `.example` is reserved (RFC 2606): no demo link or address can reach a real site or person.
pub(crate) const SHOP_URL: &str = "https://www.maison-azur.example";

pub(crate) const WEB_SHOP: &str = "Web shop";
pub(crate) const IOS_APP: &str = "iOS app";
pub(crate) const ANDROID_APP: &str = "Android app";
pub(crate) const STORES_POS: &str = "Stores POS";
pub(crate) const EMAIL: &str = "Email";
pub(crate) const SMS: &str = "SMS";
pub(crate) const CALL_CENTRE: &str = "Call centre";
pub(crate) const CHATBOT: &str = "Chatbot";

pub(crate) const SOURCES: [(&str, &str); 8] = [
    (WEB_SHOP, "web"),
    (IOS_APP, "ios"),
    (ANDROID_APP, "android"),
    (STORES_POS, "store"),
    (EMAIL, "email"),
    (SMS, "sms"),
    (CALL_CENTRE, "call_centre"),
    (CHATBOT, "chatbot"),
];

pub(crate) struct Store {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    /// Where the customers who prefer this store live; the first is the store's own city.
    pub(crate) cities: &'static [&'static str],
    /// Relative number of customers who prefer it.
    pub(crate) share: u32,
    pub(crate) tablet: &'static str,
    pub(crate) tablet_device: &'static str,
}

pub(crate) const STORES: [Store; 5] = [
    Store {
        id: "store_1",
        name: "Paris Rivoli",
        cities: &[
            "Paris",
            "Boulogne-Billancourt",
            "Montreuil",
            "Versailles",
            "Saint-Denis",
        ],
        share: 35,
        tablet: "tablet-store_1",
        tablet_device: "tablet-device-store_1",
    },
    Store {
        id: "store_2",
        name: "Lyon Part-Dieu",
        cities: &["Lyon", "Villeurbanne", "Grenoble", "Saint-Étienne"],
        share: 20,
        tablet: "tablet-store_2",
        tablet_device: "tablet-device-store_2",
    },
    Store {
        id: "store_3",
        name: "Lille Europe",
        cities: &["Lille", "Roubaix", "Tourcoing", "Arras"],
        share: 15,
        tablet: "tablet-store_3",
        tablet_device: "tablet-device-store_3",
    },
    Store {
        id: "store_4",
        name: "Bordeaux Sainte-Catherine",
        cities: &["Bordeaux", "Mérignac", "Pessac", "Arcachon"],
        share: 15,
        tablet: "tablet-store_4",
        tablet_device: "tablet-device-store_4",
    },
    Store {
        id: "store_5",
        name: "Marseille Terrasses",
        cities: &["Marseille", "Aix-en-Provence", "Toulon", "Aubagne"],
        share: 15,
        tablet: "tablet-store_5",
        tablet_device: "tablet-device-store_5",
    },
];

pub(crate) struct Category {
    pub(crate) name: &'static str,
    pub(crate) slug: &'static str,
    pub(crate) sizes: &'static [&'static str],
}

pub(crate) const CLOTHING_SIZES: &[&str] = &["XS", "S", "M", "L", "XL"];
pub(crate) const DRESSES: Category = Category {
    name: "Dresses",
    slug: "dresses",
    sizes: CLOTHING_SIZES,
};
pub(crate) const TOPS: Category = Category {
    name: "Tops",
    slug: "tops",
    sizes: CLOTHING_SIZES,
};
pub(crate) const JEANS: Category = Category {
    name: "Jeans",
    slug: "jeans",
    sizes: &["34", "36", "38", "40", "42", "44"],
};
pub(crate) const KNITWEAR: Category = Category {
    name: "Knitwear",
    slug: "knitwear",
    sizes: CLOTHING_SIZES,
};
pub(crate) const COATS: Category = Category {
    name: "Coats & jackets",
    slug: "coats-jackets",
    sizes: CLOTHING_SIZES,
};
pub(crate) const SHOES: Category = Category {
    name: "Shoes",
    slug: "shoes",
    sizes: &["36", "37", "38", "39", "40", "41"],
};
pub(crate) const BAGS: Category = Category {
    name: "Bags",
    slug: "bags",
    sizes: &["OS"],
};
pub(crate) const ACCESSORIES: Category = Category {
    name: "Accessories",
    slug: "accessories",
    sizes: &["OS"],
};
pub(crate) const CATEGORIES: [&Category; 8] = [
    &DRESSES,
    &TOPS,
    &JEANS,
    &KNITWEAR,
    &COATS,
    &SHOES,
    &BAGS,
    &ACCESSORIES,
];

pub(crate) struct Product {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) category: &'static Category,
    pub(crate) price_cents: i64,
}

impl Product {
    pub(crate) fn url(&self) -> String {
        format!("{SHOP_URL}/p/{}", self.id)
    }
}

/// Items at or above this price make up a VIP's basket more often than not.
pub(crate) const PREMIUM_CENTS: i64 = 14_900;

pub(crate) const CATALOG: &[Product] = &[
    Product {
        id: "P1001",
        name: "Linen wrap dress",
        category: &DRESSES,
        price_cents: 8_900,
    },
    Product {
        id: "P1002",
        name: "Floral midi dress",
        category: &DRESSES,
        price_cents: 7_900,
    },
    Product {
        id: "P1003",
        name: "Black slip dress",
        category: &DRESSES,
        price_cents: 6_900,
    },
    Product {
        id: "P1004",
        name: "Poplin shirt dress",
        category: &DRESSES,
        price_cents: 7_500,
    },
    Product {
        id: "P2001",
        name: "Striped Breton top",
        category: &TOPS,
        price_cents: 3_500,
    },
    Product {
        id: "P2002",
        name: "Silk blouse",
        category: &TOPS,
        price_cents: 8_900,
    },
    Product {
        id: "P2003",
        name: "Organic cotton T-shirt",
        category: &TOPS,
        price_cents: 2_500,
    },
    Product {
        id: "P2004",
        name: "Linen shirt",
        category: &TOPS,
        price_cents: 5_900,
    },
    Product {
        id: "P3001",
        name: "High-rise straight jeans",
        category: &JEANS,
        price_cents: 7_900,
    },
    Product {
        id: "P3002",
        name: "Wide-leg jeans",
        category: &JEANS,
        price_cents: 8_500,
    },
    Product {
        id: "P3003",
        name: "Slim black jeans",
        category: &JEANS,
        price_cents: 6_900,
    },
    Product {
        id: "P4001",
        name: "Merino crew-neck jumper",
        category: &KNITWEAR,
        price_cents: 8_900,
    },
    Product {
        id: "P4002",
        name: "Cashmere cardigan",
        category: &KNITWEAR,
        price_cents: 17_900,
    },
    Product {
        id: "P4003",
        name: "Cable-knit jumper",
        category: &KNITWEAR,
        price_cents: 9_900,
    },
    Product {
        id: "P5001",
        name: "Double-faced wool coat",
        category: &COATS,
        price_cents: 29_900,
    },
    Product {
        id: "P5002",
        name: "Classic trench coat",
        category: &COATS,
        price_cents: 22_900,
    },
    Product {
        id: "P5003",
        name: "Quilted jacket",
        category: &COATS,
        price_cents: 14_900,
    },
    Product {
        id: "P5004",
        name: "Leather biker jacket",
        category: &COATS,
        price_cents: 34_900,
    },
    Product {
        id: "P6001",
        name: "Leather ballet flats",
        category: &SHOES,
        price_cents: 9_900,
    },
    Product {
        id: "P6002",
        name: "White leather trainers",
        category: &SHOES,
        price_cents: 8_900,
    },
    Product {
        id: "P6003",
        name: "Suede ankle boots",
        category: &SHOES,
        price_cents: 15_900,
    },
    Product {
        id: "P6004",
        name: "Canvas espadrilles",
        category: &SHOES,
        price_cents: 4_900,
    },
    Product {
        id: "P7001",
        name: "Leather tote bag",
        category: &BAGS,
        price_cents: 19_900,
    },
    Product {
        id: "P7002",
        name: "Crossbody bag",
        category: &BAGS,
        price_cents: 12_900,
    },
    Product {
        id: "P7003",
        name: "Straw basket bag",
        category: &BAGS,
        price_cents: 5_900,
    },
    Product {
        id: "P8001",
        name: "Printed silk scarf",
        category: &ACCESSORIES,
        price_cents: 4_900,
    },
    Product {
        id: "P8002",
        name: "Leather belt",
        category: &ACCESSORIES,
        price_cents: 3_900,
    },
    Product {
        id: "P8003",
        name: "Gold hoop earrings",
        category: &ACCESSORIES,
        price_cents: 2_900,
    },
    Product {
        id: "P8004",
        name: "Wool beret",
        category: &ACCESSORIES,
        price_cents: 2_900,
    },
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Emma", "Jade", "Louise", "Alice", "Lina", "Sarah",
    "Julie", "Clara", "Zoé", "Anaïs", "Marie", "Pauline", "Hélène", "Sophie", "Nathalie",
    "Isabelle", "Céline", "Mathilde", "Margaux", "Lucas", "Hugo", "Thomas", "Nicolas", "Julien",
    "Antoine", "Maxime", "Karim", "Mehdi", "Yanis", "Paul", "Louis", "Gabriel", "Arthur", "Théo",
    "Romain",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefèvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Benali",
    "Nguyen",
    "Da Silva",
    "Lemaire",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
];

/// Look-alikes of French mail providers under the reserved `.example` top-level domain.
pub(crate) const EMAIL_DOMAINS: &[&str] = &[
    "gmail.example",
    "orange.example",
    "free.example",
    "outlook.example",
    "laposte.example",
    "icloud.example",
];

pub(crate) const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
];

/// Newsletter themes: campaign name and subject line.
pub(crate) const NEWSLETTERS: &[(&str, &str)] = &[
    ("New in", "Just landed: the new collection"),
    ("Linen edit", "Linen season is here"),
    ("Weekend offer", "-20% on dresses this weekend"),
    ("Members' private sale", "Your private sale starts now"),
    ("Shoes & bags", "Step out in style"),
    ("Workwear guide", "Back to work, beautifully"),
    ("Last chance", "Last days of the summer sale"),
];

pub(crate) const TEXT_MESSAGES: &[&str] = &[
    "Flash sale",
    "Late-night shopping in store",
    "Loyalty points reminder",
];

pub(crate) const CALL_REASONS: &[&str] = &[
    "Order status",
    "Return request",
    "Size advice",
    "Loyalty points",
    "Store opening hours",
    "Damaged item",
];

pub(crate) const CHAT_TOPICS: &[&str] = &[
    "Delivery times",
    "Returns",
    "Size guide",
    "Click & collect",
    "Gift cards",
];
