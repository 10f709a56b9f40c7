//! The console's two languages: every string it shows, in English and French, and dates and
//! numbers as each language writes them.

use parcours_core::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim() {
            "en" => Some(Lang::En),
            "fr" => Some(Lang::Fr),
            _ => None,
        }
    }

    /// The first of English and French an `Accept-Language` header names (English when it
    /// names neither).
    pub fn from_accept(header: &str) -> Lang {
        for part in header.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag == "fr" || tag.starts_with("fr-") {
                return Lang::Fr;
            }
            if tag == "en" || tag.starts_with("en-") {
                return Lang::En;
            }
        }
        Lang::En
    }

    /// The other language (what the switch offers).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Fr,
            Lang::Fr => Lang::En,
        }
    }

    /// The language's own name, as the switch shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
        }
    }
}

/// Every string: key, English, French.
const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "Console", "Console"),
    ("skip", "Skip to content", "Aller au contenu"),
    ("sign_in", "Sign in", "Se connecter"),
    ("sign_in_intro", "Sign in with an admin token of your workspace (parcours token create, or the one parcours demo printed).", "Connectez-vous avec un jeton d'administration de votre espace (parcours token create, ou celui affiché par parcours demo)."),
    ("token", "Token", "Jeton"),
    ("sign_out", "Sign out", "Se déconnecter"),
    ("invalid_token", "This token is not valid, or it has expired or been revoked.", "Ce jeton n'est pas valide, ou il a expiré ou été révoqué."),
    ("missing_token", "Enter a token.", "Saisissez un jeton."),
    ("signed_in_as", "Signed in to", "Connecté à"),
    ("role", "Role", "Rôle"),
    ("role_admin", "admin", "administrateur"),
    ("role_marketer", "marketer", "marketing"),
    ("role_agent", "customer service", "service client"),
    ("role_analyst", "analyst", "analyste"),
    ("role_read_only", "read-only", "lecture seule"),
    ("nav", "Main", "Principal"),
    ("customers", "Customers", "Clients"),
    ("search", "Search", "Rechercher"),
    ("search_label", "Email, phone, user id, loyalty card or any identifier", "E-mail, téléphone, identifiant, carte de fidélité ou tout identifiant"),
    ("search_none", "No customer has this identifier.", "Aucun client n'a cet identifiant."),
    ("found_by", "Found by", "Trouvé par"),
    ("all_customers", "Customers, by id", "Clients, par identifiant"),
    ("next_page", "Next page", "Page suivante"),
    ("customer", "Customer", "Client"),
    ("anonymous", "Anonymous visitor", "Visiteur anonyme"),
    ("profile_id", "Profile", "Profil"),
    ("first_seen", "First seen", "Vu pour la première fois"),
    ("last_seen", "Last seen", "Vu pour la dernière fois"),
    ("events", "Events", "Événements"),
    ("identifiers", "Identifiers", "Identifiants"),
    ("kind", "Type", "Type"),
    ("value", "Value", "Valeur"),
    ("linked_at", "Linked", "Lié le"),
    ("traits", "Traits", "Attributs"),
    ("name", "Name", "Nom"),
    ("set_at", "Set", "Défini le"),
    ("consents", "Consents", "Consentements"),
    ("consent_text_version", "text version", "version du texte"),
    ("her_requests", "Her requests", "Ses demandes"),
    ("purpose", "Purpose", "Finalité"),
    ("state", "State", "État"),
    ("granted", "granted", "accordé"),
    ("withdrawn", "withdrawn", "retiré"),
    ("proof", "Proof", "Preuve"),
    ("audiences", "Audiences", "Audiences"),
    ("audience", "Audience", "Audience"),
    ("audience_id", "Id", "Identifiant"),
    ("audience_id_help", "Lower-case letters, digits, - and _; it names the audience in the API and in journeys.", "Minuscules, chiffres, - et _ ; il désigne l'audience dans l'API et les parcours."),
    ("definition", "Definition", "Définition"),
    ("definition_help", "For example: trait plan = \"gold\" and did \"Order Completed\" on store within 30 days", "Par exemple : trait plan = \"gold\" and did \"Order Completed\" on store within 30 days"),
    ("members", "Members", "Membres"),
    ("computing", "computing:", "calcul en cours :"),
    ("new_audience", "New audience", "Nouvelle audience"),
    ("save_audience", "Save and compute", "Enregistrer et calculer"),
    ("line", "Line", "Ligne"),
    ("column", "column", "colonne"),
    ("reads_as", "Reads as", "Se lit"),
    ("why", "Why she is in it, or not", "Pourquoi elle en fait partie, ou non"),
    ("why_short", "why", "pourquoi"),
    ("matches_now", "Her profile matches the definition now;", "Son profil correspond à la définition maintenant ;"),
    ("not_matches_now", "Her profile does not match the definition now;", "Son profil ne correspond pas à la définition maintenant ;"),
    ("is_member", "she is a member.", "elle en est membre."),
    ("is_not_member", "she is not a member.", "elle n'en est pas membre."),
    ("may_change", "With no new event, this may change on", "Sans nouvel événement, cela peut changer le"),
    ("found", "What was found", "Ce qui a été trouvé"),
    ("holds", "holds", "vrai"),
    ("does_not_hold", "does not hold", "faux"),
    ("since", "Since", "Depuis"),
    ("journeys", "Journeys", "Parcours"),
    ("journey", "Journey", "Parcours"),
    ("why_runs", "Why she got each message, or not", "Pourquoi elle a reçu chaque message, ou non"),
    ("no_runs", "She entered no journey: none was live when her events arrived, or their entries did not match them.", "Elle n'est entrée dans aucun parcours : aucun n'était actif à l'arrivée de ses événements, ou leurs entrées ne les concernaient pas."),
    ("step", "Step", "Étape"),
    ("decision", "Decision", "Décision"),
    ("all_decisions", "every decision", "chaque décision"),
    ("status", "Status", "Statut"),
    ("version", "Version", "Version"),
    ("entered_runs", "Runs entered", "Entrées"),
    ("graph", "Graph", "Graphe"),
    ("steps", "Steps", "Étapes"),
    ("waiting", "waiting", "en attente"),
    ("end", "End", "Fin"),
    ("document", "Document", "Document"),
    ("edit_document", "Edit the document", "Modifier le document"),
    ("edit_help", "YAML or JSON, as in docs/journeys.md. It is checked as you type: its problems at their line and column, or what saving it changes, runs in flight included.", "YAML ou JSON, comme dans docs/journeys.md. Il est vérifié pendant la saisie : ses problèmes à leur ligne et colonne, ou ce que l'enregistrer change, parcours en cours compris."),
    ("save_version", "Save as the next version", "Enregistrer comme version suivante"),
    ("no_change", "The same as the latest version: saving stores nothing.", "Identique à la dernière version : l'enregistrer ne stocke rien."),
    ("reads_well", "It reads. Saving it changes:", "Il se lit. L'enregistrer change :"),
    ("new_journey", "New journey", "Nouveau parcours"),
    ("simulate", "Simulate", "Simuler"),
    ("simulate_help", "Replays the latest version over the stored events of a window, as if it had been live: who would have entered, what would have gone out, who converted. Nothing is saved or sent.", "Rejoue la dernière version sur les événements enregistrés d'une période, comme s'il avait été actif : qui serait entré, ce qui serait parti, qui a converti. Rien n'est enregistré ni envoyé."),
    ("from", "From", "Du"),
    ("to_date", "To", "Au"),
    ("bad_window", "Give the window as two dates (2026-11-01).", "Donnez la période sous forme de deux dates (2026-11-01)."),
    ("holdout", "holdout", "groupe témoin"),
    ("global_control", "global control group", "groupe de contrôle global"),
    ("treated", "treated", "traités"),
    ("results", "Results", "Résultats"),
    ("group", "Group", "Groupe"),
    ("conversion", "Conversion", "Conversion"),
    ("uplift", "Uplift against the holdout:", "Gain par rapport au groupe témoin :"),
    ("ci95", "95% interval", "intervalle à 95 %"),
    ("significant", "significant at 95%.", "significatif à 95 %."),
    ("not_significant", "not significant at 95%: the difference may be chance.", "non significatif à 95 % : la différence peut être due au hasard."),
    ("underpowered", "Too few customers in a group (under 100) to tell: wait for more before deciding.", "Trop peu de clients dans un groupe (moins de 100) pour conclure : attendez-en davantage avant de décider."),
    ("would_send", "Messages that would go", "Messages qui partiraient"),
    ("ended_how", "How runs ended", "Comment les parcours se sont terminés"),
    ("not_entered", "Not entered, and why", "Non entrés, et pourquoi"),
    ("conflicts", "Live journeys writing to the same customers within a day", "Parcours actifs écrivant aux mêmes clients dans la journée"),
    ("journey_id", "Id of the new journey", "Identifiant du nouveau parcours"),
    ("entered", "Entered", "Entré le"),
    ("in_progress", "in progress", "en cours"),
    ("ended", "ended", "terminé"),
    ("outcome_goal", "reached its goal", "objectif atteint"),
    ("outcome_exited", "exited", "sorti"),
    ("outcome_completed", "completed", "terminé"),
    ("messages", "Messages received", "Messages reçus"),
    ("messages_nav", "Messages", "Messages"),
    ("to", "To", "Destinataire"),
    ("attempts", "attempts", "tentatives"),
    ("key", "Key", "Clé"),
    ("as_received", "As received", "Tel que reçu"),
    ("text_part", "Text", "Texte"),
    ("channel", "Channel", "Canal"),
    ("sent_at", "Sent", "Envoyé le"),
    ("merges", "Merge history", "Historique des fusions"),
    ("merged_with", "Merged with", "Fusionné avec"),
    ("cause", "Cause", "Cause"),
    ("merge_active", "in effect", "en vigueur"),
    ("merge_undone", "undone", "annulée"),
    ("unmerge", "Unmerge", "Défusionner"),
    ("unmerge_title", "Unmerge: what it will do", "Défusionner : ce qui va se passer"),
    ("unmerge_explain", "The two profiles are derived again from their own events: each gets back the identifiers its events brought. Audiences and journeys follow.", "Les deux profils sont recalculés à partir de leurs propres événements : chacun retrouve les identifiants apportés par ses événements. Audiences et parcours suivent."),
    ("merge_event", "the event", "l'événement"),
    ("unmerge_keeps", "This profile", "Ce profil"),
    ("unmerge_returns", "Gets back its own profile", "Retrouve son propre profil"),
    ("anchored_by", "anchored by", "ancré par"),
    ("it_held", "it held", "il détenait"),
    ("unmerge_confirm", "Unmerge now", "Défusionner maintenant"),
    ("cancel", "Cancel", "Annuler"),
    ("unmerged", "Unmerged: the two profiles are below.", "Défusionné : les deux profils sont ci-dessous."),
    ("timeline", "Timeline", "Chronologie"),
    ("all_channels", "All channels", "Tous les canaux"),
    ("filter", "Filter", "Filtrer"),
    ("when", "When", "Quand"),
    ("what", "What", "Quoi"),
    ("details", "Details", "Détails"),
    ("older", "Older events", "Événements plus anciens"),
    ("no_events", "No events on this channel.", "Aucun événement sur ce canal."),
    ("none", "Nothing yet.", "Rien pour l'instant."),
    ("not_found", "Not found", "Introuvable"),
    ("forbidden", "Not allowed", "Non autorisé"),
    ("bad_form", "This form has expired or did not come from this console. Reload the page and try again.", "Ce formulaire a expiré ou ne vient pas de cette console. Rechargez la page et réessayez."),
    ("error", "Something went wrong", "Une erreur s'est produite"),
    ("back", "Back", "Retour"),
    ("language", "Language", "Langue"),
    ("settings", "Settings", "Paramètres"),
    ("identity_rules", "Identity rules", "Règles d'identité"),
    ("identity_rules_json", "The rules (JSON, as in docs/identity.md)", "Les règles (JSON, comme dans docs/identity.md)"),
    ("rules_help", "Which identifiers join profiles, in which order they win, how many of each a profile may hold, which values are never identifiers, and what unknown consent counts as.", "Quels identifiants relient les profils, dans quel ordre ils l'emportent, combien de chacun un profil peut porter, quelles valeurs ne sont jamais des identifiants, et ce que vaut un consentement inconnu."),
    ("save_rules", "Save the rules", "Enregistrer les règles"),
    ("rules_saved", "Saved. They apply to new events; run parcours replay to apply them to the past.", "Enregistrées. Elles s'appliquent aux nouveaux événements ; lancez parcours replay pour les appliquer au passé."),
    ("workspace", "Workspace", "Espace"),
    ("sources", "Sources and write keys", "Sources et clés d'écriture"),
    ("snippet", "What to paste", "À coller"),
    ("created", "Created", "Créé le"),
    ("channel_from_events", "From each event", "Selon chaque événement"),
    ("new_source", "Create a source", "Créer une source"),
    ("write_key", "New write key", "Nouvelle clé d'écriture"),
    ("token_made", "New token", "Nouveau jeton"),
    ("shown_once", "Copy it now: it is shown only this once (Parcours keeps only a hash of it).", "Copiez-la maintenant : elle n'est affichée qu'une fois (Parcours n'en garde qu'une empreinte)."),
    ("tokens", "Tokens and roles", "Jetons et rôles"),
    ("expires", "Expires", "Expire le"),
    ("revoke", "Revoke", "Révoquer"),
    ("revoked", "revoked or expired", "révoqué ou expiré"),
    ("new_token", "Create a token", "Créer un jeton"),
    ("expires_in_days", "Expires in (days, optional)", "Expire dans (jours, facultatif)"),
    ("bad_days", "The expiry is a number of days.", "L'expiration est un nombre de jours."),
    ("quality", "Data quality", "Qualité des données"),
    ("unify_lag", "Events not yet on profiles", "Événements pas encore sur les profils"),
    ("audience_lag", "Events not yet in audiences", "Événements pas encore dans les audiences"),
    ("quarantine", "Quarantine", "Quarantaine"),
    ("quarantine_help", "Events set aside because they broke the spec or could not be applied: fix one and replay it, or discard it.", "Événements mis de côté car ils ne respectaient pas la spécification ou n'ont pu être appliqués : corrigez-en un et rejouez-le, ou écartez-le."),
    ("pending", "Pending", "En attente"),
    ("replayed", "Replayed", "Rejoués"),
    ("discarded", "Discarded", "Écartés"),
    ("reason", "Reason", "Raison"),
    ("occurrences", "Occurrences", "Occurrences"),
    ("source", "Source", "Source"),
    ("payload", "The event", "L'événement"),
    ("replay_help", "Fix the event if needed: it is checked again as its source would check it.", "Corrigez l'événement si besoin : il est vérifié à nouveau comme sa source le vérifierait."),
    ("replay", "Replay", "Rejouer"),
    ("discard", "Discard", "Écarter"),
    ("dashboard", "Dashboard", "Tableau de bord"),
    ("webhooks_signed", "Journeys' webhook steps call out, signed with the configured secret (Standard Webhooks).", "Les étapes webhook des parcours appellent, signées avec le secret configuré (Standard Webhooks)."),
    ("webhooks_unsigned", "Journeys' webhook steps cannot call out: no signing secret is configured (channels.webhook.secret).", "Les étapes webhook des parcours ne peuvent pas appeler : aucun secret de signature n'est configuré (channels.webhook.secret)."),
    ("receipts", "What became of it", "Ce qu'il est devenu"),
    ("no_receipt", "No receipt yet: the provider has said nothing about it (the capture channel never does).", "Aucun retour pour l'instant : le fournisseur n'en a rien dit (le canal de capture ne dit jamais rien)."),
    ("detail", "Detail", "Détail"),
    ("estimate_size", "Estimate its size", "Estimer sa taille"),
    ("estimate_exact", "It would hold, now:", "Elle compterait, maintenant :"),
    ("estimate_about", "It would hold about", "Elle compterait environ"),
    ("estimate_of", "of a sample of", "sur un échantillon de"),
    ("export", "Export the members", "Exporter les membres"),
    ("destinations", "Destinations", "Destinations"),
    ("no_destination", "No destination sends this audience (create one with the API: POST /api/v1/destinations).", "Aucune destination n'envoie cette audience (créez-en une avec l'API : POST /api/v1/destinations)."),
    ("delivered", "Delivered", "Livrés"),
    ("dead", "Given up", "Abandonnés"),
    ("last_error", "Last error", "Dernière erreur"),
    ("every_audience", "every audience of the workspace", "toutes les audiences de l'espace"),
    ("delivery_log", "Delivery log", "Journal de livraison"),
    ("changes", "Changes", "Changements"),
    ("attempts_col", "Attempts", "Tentatives"),
    ("settled", "Settled", "Réglé le"),
    ("switch_to", "Workspace", "Espace"),
    ("switch", "Switch", "Changer"),
    ("not_signed_in_to", "This browser is not signed in to the workspace", "Ce navigateur n'est pas connecté à l'espace"),
    ("sign_in_add", "Signing in to another workspace: you stay signed in to this one, and the header lets you switch between them.", "Connexion à un autre espace : vous restez connecté à celui-ci, et l'en-tête permet de passer de l'un à l'autre."),
    ("add_workspace", "Sign in to another workspace", "Se connecter à un autre espace"),
    ("new_workspace", "Create a workspace", "Créer un espace"),
    ("workspace_name", "Name", "Nom"),
    ("workspace_made", "New workspace", "Nouvel espace"),
    ("preview_rules", "Preview the effect", "Prévisualiser l'effet"),
    ("preview_title", "What these rules would change", "Ce que ces règles changeraient"),
    ("preview_read", "Read the workspace's latest events:", "Lu les derniers événements de l'espace :"),
    ("preview_now", "Rules in force", "Règles en vigueur"),
    ("preview_profiles", "Profiles", "Profils"),
    ("preview_with", "These rules", "Ces règles"),
    ("preview_changed", "customers would be grouped differently.", "clients seraient regroupés autrement."),
    ("preview_examples", "For example:", "Par exemple :"),
    ("preview_help", "Nothing was saved. Saved rules apply to new events; `parcours replay` applies them to the past.", "Rien n'a été enregistré. Les règles enregistrées s'appliquent aux nouveaux événements ; `parcours replay` les applique au passé."),
    ("message_channels", "Message channels", "Canaux d'envoi"),
    ("message_channels_help", "What journeys' messages leave through on this node, from its configuration (channels.email, channels.sms, channels.push). Send a test to check one before a journey relies on it.", "Par où partent les messages des parcours sur ce nœud, d'après sa configuration (channels.email, channels.sms, channels.push). Envoyez un test pour en vérifier un avant qu'un parcours en dépende."),
    ("sends_through", "Sends through", "Envoie par"),
    ("where_to", "Where", "Où"),
    ("rate_limit", "At most", "Au plus"),
    ("no_limit", "no limit", "sans limite"),
    ("capture_help", "(kept in Parcours, not sent: configure a provider)", "(gardé dans Parcours, non envoyé : configurez un fournisseur)"),
    ("test_address", "Send to (email, phone with its country code, or push token)", "Envoyer à (e-mail, téléphone avec son indicatif, ou jeton push)"),
    ("send_test", "Send a test", "Envoyer un test"),
    ("test_sent", "Test message accepted for", "Message de test accepté pour"),
    ("test_captured", "No provider is configured for this channel: the capture channel kept the test message (nothing left Parcours) for", "Aucun fournisseur n'est configuré pour ce canal : le canal de capture a gardé le message de test (rien n'a quitté Parcours) pour"),
    ("commerce", "Commerce", "Commerce"),
    ("stock_by_location", "Stock by location", "Stock par emplacement"),
    ("offers", "Offers", "Offres"),
    ("offers_help", "One promotion engine prices every channel's basket: the same basket gets the same price at the till, on the web and in the app unless an offer names its channels. Offers are tried from the highest priority down.", "Un seul moteur de promotions calcule le prix du panier sur chaque canal : le même panier a le même prix en caisse, sur le web et dans l'app, sauf si une offre nomme ses canaux. Les offres sont essayées de la plus prioritaire à la moins prioritaire."),
    ("no_offers", "No offer yet: add one with PUT /api/v1/commerce/offers/{id}.", "Aucune offre : ajoutez-en une avec PUT /api/v1/commerce/offers/{id}."),
    ("offer", "Offer", "Offre"),
    ("reward", "Reward", "Avantage"),
    ("conditions", "Conditions", "Conditions"),
    ("redemptions", "Orders", "Commandes"),
    ("discount", "Discount", "Remise"),
    ("applied_offers", "Offers applied", "Offres appliquées"),
    ("offer_active", "active", "active"),
    ("offer_paused", "paused", "en pause"),
    ("offer_scheduled", "scheduled", "programmée"),
    ("offer_ended", "ended", "terminée"),
    ("every_channel", "every channel", "tous les canaux"),
    ("coupon", "coupon", "code promo"),
    ("per_code", "per code", "par code"),
    ("per_customer", "per customer", "par client"),
    ("from_subtotal", "from a subtotal of", "dès un sous-total de"),
    ("audience_only", "audience", "audience"),
    ("free", "free", "offert"),
    ("for_price", "for", "pour"),
    ("off", "off", "de remise"),
    ("exclusive", "alone", "seule"),
    ("priority", "priority", "priorité"),
    ("stock_at", "Stock at", "Stock à"),
    ("stock_help", "Available is what can still be sold or reserved: on hand, less what reservations hold and what cannot be sold (safety stock, damaged, in quality control). Reservations past their expiry no longer count.", "Disponible : ce qui peut encore être vendu ou réservé, soit le stock physique moins ce que tiennent les réservations et ce qui ne peut être vendu (stock de sécurité, endommagé, en contrôle qualité). Les réservations échues ne comptent plus."),
    ("no_locations", "No location yet: add shops and warehouses with PUT /api/v1/commerce/locations/{id}.", "Aucun emplacement : ajoutez magasins et entrepôts avec PUT /api/v1/commerce/locations/{id}."),
    ("locations", "Locations", "Emplacements"),
    ("location", "Location", "Emplacement"),
    ("shop", "shop", "magasin"),
    ("warehouse", "warehouse", "entrepôt"),
    ("web", "web fulfilment", "préparation web"),
    ("sku", "SKU", "Référence"),
    ("on_hand", "On hand", "En stock"),
    ("reserved", "Reserved", "Réservé"),
    ("safety_stock", "Safety stock", "Stock de sécurité"),
    ("damaged", "Damaged", "Endommagé"),
    ("quality_control", "Quality control", "Contrôle qualité"),
    ("available", "Available", "Disponible"),
    ("short_after_count", "short after a count", "manquant après inventaire"),
    ("order_id", "Order number", "Numéro de commande"),
    ("loyalty_card", "Loyalty card", "Carte de fidélité"),
    ("open", "Open", "Ouvrir"),
    ("order", "Order", "Commande"),
    ("sales_channel", "Sales channel", "Canal de vente"),
    ("fulfilment", "Fulfilment", "Remise"),
    ("sold_on_the_spot", "Sold on the spot", "Vendu sur place"),
    ("click_and_collect", "Click & collect", "Retrait en magasin"),
    ("delivery", "Delivery", "Livraison"),
    ("pickup_deadline", "Pickup deadline", "Date limite de retrait"),
    ("placed_at", "Placed", "Passée le"),
    ("total", "Total", "Total"),
    ("member", "Loyalty member", "Adhérent fidélité"),
    ("lines", "Lines", "Lignes"),
    ("quantity", "Quantity", "Quantité"),
    ("unit_price", "Unit price", "Prix unitaire"),
    ("held_at", "Held at", "Réservé à"),
    ("returns", "Returns", "Retours"),
    ("return_id", "Return", "Retour"),
    ("refund", "Refund", "Remboursement"),
    ("tier", "Tier", "Niveau"),
    ("pts_active", "Active points", "Points actifs"),
    ("pts_pending", "Pending points", "Points en attente"),
    ("pts_used", "Points used", "Points utilisés"),
    ("pts_expired", "Expired points", "Points expirés"),
    ("pts_earned", "Points earned", "Points gagnés"),
    ("pts_cancelled", "Points taken back by returns", "Points repris par des retours"),
    ("points_help", "Points earned = active + pending + used + expired. Pending points wait for the return window; spending takes the soonest-expiring points first.", "Points gagnés = actifs + en attente + utilisés + expirés. Les points en attente attendent la fin du délai de retour ; une dépense prend d'abord les points qui expirent le plus tôt."),
    ("lots", "Point lots", "Lots de points"),
    ("points", "Points", "Points"),
    ("remaining", "Left", "Restants"),
    ("earned_at", "Earned", "Gagnés le"),
    ("never", "never", "jamais"),
    ("ledger", "Ledger", "Journal"),
    ("reference", "Reference", "Référence"),
    ("entry_earn", "Earned", "Gain"),
    ("entry_burn", "Spent", "Dépense"),
    ("entry_refund", "Spending refunded", "Dépense annulée"),
    ("entry_return", "Taken back by a return", "Repris par un retour"),
    ("arrivals", "What arrives", "Ce qui arrive"),
    ("arrivals_help", "Events received (and applied to profiles) per day in UTC, by the day Parcours received them. A source that sends nothing shows zeros: check its write key or its snippet.", "Événements reçus (et appliqués aux profils) par jour, en UTC, selon le jour où Parcours les a reçus. Une source qui n'envoie rien affiche des zéros : vérifiez sa clé d'écriture ou son extrait de code."),
    ("arrivals_sources", "Per source", "Par source"),
    ("arrivals_channels", "Per channel", "Par canal"),
    ("today", "Today", "Aujourd'hui"),
    ("yesterday", "Yesterday", "Hier"),
    ("trend_30", "Last 30 days", "30 derniers jours"),
    ("dash_range", "Date range", "Période"),
    ("dash_from", "From", "Du"),
    ("dash_to", "To", "Au"),
    ("dash_show", "Show", "Afficher"),
    ("dash_presets", "Common ranges", "Périodes courantes"),
    ("dash_last_7", "Last 7 days", "7 derniers jours"),
    ("dash_last_30", "Last 30 days", "30 derniers jours"),
    ("dash_last_90", "Last 90 days", "90 derniers jours"),
    ("dash_help", "Per day in UTC. Events count on the day they happened; profiles on the day of the event that made or merged them; audiences, messages and conversions on the day Parcours recorded them.", "Par jour, en UTC. Les événements comptent le jour où ils ont eu lieu ; les profils, le jour de l'événement qui les a créés ou fusionnés ; les audiences, messages et conversions, le jour où Parcours les a enregistrés."),
    ("dash_events", "Events", "Événements"),
    ("dash_new_profiles", "New profiles", "Nouveaux profils"),
    ("dash_merges", "Merged profiles", "Profils fusionnés"),
    ("dash_entered", "Audience entries", "Entrées en audience"),
    ("dash_exited", "Audience exits", "Sorties d'audience"),
    ("dash_sent", "Messages sent", "Messages envoyés"),
    ("dash_converted", "Conversions", "Conversions"),
    ("dash_converted_holdout", "Conversions in the holdout", "Conversions du groupe témoin"),
    ("dash_events_per_channel", "Events per channel", "Événements par canal"),
    ("dash_profiles", "New and merged profiles", "Profils nouveaux et fusionnés"),
    ("dash_audiences", "Audience changes", "Mouvements des audiences"),
    ("dash_journeys", "Messages and conversions per journey", "Messages et conversions par parcours"),
    ("dash_table", "The figures as a table", "Les chiffres en tableau"),
    ("dash_day", "Day", "Jour"),
    ("ch_web", "Web", "Web"),
    ("ch_ios", "iOS app", "App iOS"),
    ("ch_android", "Android app", "App Android"),
    ("ch_store", "Store", "Magasin"),
    ("ch_email", "Email", "E-mail"),
    ("ch_sms", "SMS", "SMS"),
    ("ch_call_centre", "Call centre", "Centre d'appels"),
    ("ch_chatbot", "Chatbot", "Chatbot"),
    ("ch_social", "Social", "Réseaux sociaux"),
    ("ch_ads", "Ads", "Publicité"),
    ("ch_server", "Server", "Serveur"),
    ("ch_push", "Push", "Notification push"),
    ("measure", "Measurement", "Mesure"),
    ("m_by", "Break down by", "Détailler par"),
    ("m_by_channel", "Channel", "Canal"),
    ("m_by_side", "Online or offline", "En ligne ou hors ligne"),
    ("m_by_shop", "Shop", "Magasin"),
    ("m_by_campaign", "Campaign", "Campagne"),
    ("m_by_week", "Week", "Semaine"),
    ("m_by_month", "Month", "Mois"),
    ("m_help", "Read from the event log, each event under the unified customer it belongs to. Every definition and denominator is in docs/measurement.md; the same figures come from GET /api/v1/measure/kpis, /attribution and /funnel, and as CSV.", "Lus dans le journal des événements, chaque événement rattaché au client unifié auquel il appartient. Chaque définition et chaque dénominateur sont dans docs/measurement.md ; les mêmes chiffres sont servis par GET /api/v1/measure/kpis, /attribution et /funnel, et en CSV."),
    ("m_kpis", "Key figures", "Indicateurs clés"),
    ("m_key", "Group", "Groupe"),
    ("m_visitors", "Visitors", "Visiteurs"),
    ("m_buyers", "Buyers", "Acheteurs"),
    ("m_orders", "Orders", "Commandes"),
    ("m_revenue", "Revenue", "Chiffre d'affaires"),
    ("m_aov", "Average order value", "Panier moyen"),
    ("m_conversion", "Conversion (buyers ÷ visitors)", "Conversion (acheteurs ÷ visiteurs)"),
    ("m_repeat", "Repeat purchase rate", "Taux de réachat"),
    ("m_frequency", "Orders per buyer", "Commandes par acheteur"),
    ("m_new", "New customers", "Nouveaux clients"),
    ("m_abandonment", "Cart abandonment", "Abandon de panier"),
    ("m_nps", "NPS", "NPS"),
    ("m_answers", "Survey answers", "Réponses à l'enquête"),
    ("m_cac", "Acquisition cost per new customer", "Coût d'acquisition par nouveau client"),
    ("m_export", "Download as CSV", "Télécharger en CSV"),
    ("m_attribution", "Sales by channel, per attribution model", "Ventes par canal, selon le modèle d'attribution"),
    ("m_attribution_help", "Each order credited to the channels of the 30 days before it, its own included. Models: first and last touch, linear, position-based (40/20/40), time decay (7-day half-life), Shapley, Markov removal effect.", "Chaque commande attribuée aux canaux des 30 jours qui la précèdent, le sien compris. Modèles : premier et dernier contact, linéaire, en U (40/20/40), dégressif (demi-vie 7 jours), Shapley, effet de retrait de Markov."),
    ("m_channel", "Channel", "Canal"),
    ("m_funnel", "Purchase funnel (7-day window)", "Tunnel d'achat (fenêtre de 7 jours)"),
    ("m_step", "Step", "Étape"),
    ("m_people", "People", "Personnes"),
    ("m_share", "Share of step 1", "Part de l'étape 1"),
    ("m_median", "Median time from first to last step", "Temps médian de la première à la dernière étape"),
    ("m_reading", "Reading the event log", "Lecture du journal des événements"),
    ("m_reading_help", "The figures are computed from the whole event log, which is being read now; this page shows them as soon as it is done. Other pages stay usable meanwhile.", "Les chiffres sont calculés sur tout le journal des événements, en cours de lecture ; cette page les affiche dès la lecture terminée. Les autres pages restent utilisables pendant ce temps."),
    ("m_reading_again", "Show the figures (when the reading is done)", "Afficher les chiffres (une fois la lecture terminée)"),
    ("m_reading_owners", "events matched to their customer, of", "événements rattachés à leur client, sur"),
    ("m_reading_events", "events read, of", "événements lus, sur"),
    ("m_uplift", "Did the journeys work?", "Les parcours ont-ils marché ?"),
    ("m_uplift_help", "Each journey's customers by group: those it treated, its holdout and the workspace's global control group (sent nothing by any journey). Orders and revenue count what they bought within 30 days of entering; the goal rate, the runs that met the journey's goal. The same report comes from GET /api/v1/measure/uplift, and as CSV.", "Les clients de chaque parcours par groupe : ceux qu'il a traités, son groupe témoin et le groupe de contrôle global de l'espace (à qui aucun parcours n'envoie rien). Commandes et chiffre d'affaires comptent ce qu'ils ont acheté dans les 30 jours après leur entrée ; le taux d'objectif, les passages qui ont atteint l'objectif du parcours. Le même rapport est servi par GET /api/v1/measure/uplift, et en CSV."),
    ("m_entered", "Entered", "Entrés"),
    ("m_goal_rate", "Goal rate", "Taux d'objectif"),
    ("m_revenue_per_entrant", "Revenue per customer", "Chiffre d'affaires par client"),
    ("m_against", "Against", "Contre"),
    ("m_uplift_pp", "Uplift of the goal rate", "Écart du taux d'objectif"),
    ("m_incremental_revenue", "Incremental revenue", "Chiffre d'affaires incrémental"),
    ("m_verdict", "Reading", "Lecture"),
    ("m_underpowered", "Too few customers to conclude", "Trop peu de clients pour conclure"),
    ("m_model_first", "First touch", "Premier contact"),
    ("m_model_last", "Last touch", "Dernier contact"),
    ("m_model_linear", "Linear", "Linéaire"),
    ("m_model_position_based", "Position-based", "En U"),
    ("m_model_time_decay", "Time decay", "Dégressif"),
    ("m_model_shapley", "Shapley", "Shapley"),
    ("m_model_markov", "Markov", "Markov"),
    ("privacy", "Privacy", "Confidentialité"),
    ("privacy_customer_intro", "Her data, as the GDPR gives her rights to it: an export of everything Parcours holds about her (access, portability), or its erasure.", "Ses données, selon les droits que lui donne le RGPD : un export de tout ce que Parcours détient sur elle (accès, portabilité), ou leur effacement."),
    ("export_her_data", "Export her data", "Exporter ses données"),
    ("erase_her_data", "Erase her data…", "Effacer ses données…"),
    ("erase_title", "Erase a customer: what it will do", "Effacer une cliente : ce qui va se passer"),
    ("erase_explain", "Every event, profile, identifier, audience membership, journey, message and delivery of hers is deleted, and the storage is rewritten so the bytes are gone. Orders and loyalty entries stay for the accounts, without her. Her identifiers go on the suppression list: her events are refused from then on. It cannot be undone; the audit log keeps the proof, without her data.", "Chaque événement, profil, identifiant, appartenance à une audience, parcours, message et envoi la concernant est supprimé, et le stockage est réécrit pour que les octets disparaissent. Les commandes et les écritures de fidélité restent pour la comptabilité, sans elle. Ses identifiants rejoignent la liste de suppression : ses événements sont refusés dès lors. C'est irréversible ; le journal d'audit en garde la preuve, sans ses données."),
    ("erase_understood", "I understand that this cannot be undone", "Je comprends que c'est irréversible"),
    ("erase_confirm", "Erase now", "Effacer maintenant"),
    ("erase_unconfirmed", "Tick the box to confirm the erasure.", "Cochez la case pour confirmer l'effacement."),
    ("request_filed", "The request is filed; it runs in the background:", "La demande est enregistrée ; elle s'exécute en arrière-plan :"),
    ("privacy_saved", "The privacy settings are saved.", "Les réglages de confidentialité sont enregistrés."),
    ("privacy_requests", "Requests of customers", "Demandes des clients"),
    ("privacy_requests_intro", "Access and erasure requests, with the day each must be answered by (one month, extensions included).", "Demandes d'accès et d'effacement, avec le jour où chacune doit avoir reçu sa réponse (un mois, prolongations comprises)."),
    ("request", "Request", "Demande"),
    ("received", "Received", "Reçue"),
    ("deadline", "Answer by", "Réponse avant le"),
    ("answered", "Answered", "Répondue"),
    ("extended", "extended", "prolongée"),
    ("download_archive", "download the archive", "télécharger l'archive"),
    ("req_access", "access", "accès"),
    ("req_erasure", "erasure", "effacement"),
    ("req_state_received", "received", "reçue"),
    ("req_state_in_progress", "in progress", "en cours"),
    ("req_state_done", "done", "faite"),
    ("req_state_failed", "failed", "échouée"),
    ("privacy_settings", "What Parcours keeps, and how long", "Ce que Parcours garde, et combien de temps"),
    ("privacy_settings_intro", "Applied to events as they arrive (IP addresses, locations) and every hour to what is stored (retention in days; empty: kept until deleted).", "Appliqué aux événements à leur arrivée (adresses IP, positions) et chaque heure à ce qui est stocké (conservation en jours ; vide : gardé jusqu'à suppression)."),
    ("ip_addresses", "IP addresses", "Adresses IP"),
    ("ip_truncate", "cut to their network", "réduites à leur réseau"),
    ("ip_drop", "dropped", "supprimées"),
    ("ip_keep", "kept", "gardées"),
    ("precise_location", "Precise locations", "Positions précises"),
    ("loc_with_consent", "kept with her consent only", "gardées avec son consentement seulement"),
    ("loc_drop", "dropped", "supprimées"),
    ("loc_keep", "kept", "gardées"),
    ("ret_events", "Events (days)", "Événements (jours)"),
    ("ret_bodies", "Message contents (days)", "Contenu des messages (jours)"),
    ("ret_messages", "Messages sent (days)", "Messages envoyés (jours)"),
    ("ret_quarantine", "Quarantined events (days)", "Événements en quarantaine (jours)"),
    ("ret_deliveries", "Destination deliveries (days)", "Envois aux destinations (jours)"),
    ("ret_rules", "Rules by event name and type (set through the API)", "Règles par nom et type d'événement (réglées par l'API)"),
    ("kept", "kept", "gardé"),
    ("save", "Save", "Enregistrer"),
    ("audit_log", "Audit log", "Journal d'audit"),
    ("audit_intro", "Newest first. Who did what, when: requests and their outcome, settings, retention, and every change of configuration. Append-only; it holds no customer's personal data.", "Les plus récentes d'abord. Qui a fait quoi, et quand : les demandes et leur issue, les réglages, la conservation, et chaque changement de configuration. En ajout seul ; il ne contient aucune donnée personnelle de client."),
    ("download_csv", "download as CSV", "télécharger en CSV"),
    ("who", "Who", "Qui"),
    ("action", "Action", "Action"),
    ("target", "On", "Sur"),
    ("older_entries", "Older entries", "Entrées plus anciennes"),
    ("scopes", "Scopes", "Périmètre"),
    ("all_parts", "every part", "toutes les parties"),
    ("scopes_help", "Comma-separated: profiles, audiences, journeys, commerce, measure, privacy, sources, admin. Empty: every part its role allows.", "Séparés par des virgules : profiles, audiences, journeys, commerce, measure, privacy, sources, admin. Vide : toutes les parties que son rôle permet."),
];

/// What a page needs to speak the user's language.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_FR: [&str; 12] = [
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
];

impl Tr {
    /// The string for `key`; an unknown key shows as `??missing??` (the tests look for it).
    pub fn t(&self, key: &str) -> &'static str {
        match TEXTS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, fr)) => match self.lang {
                Lang::En => en,
                Lang::Fr => fr,
            },
            None => "??missing??",
        }
    }

    /// Where a journey run is: in progress, or how it ended.
    pub fn run_state(&self, active: bool, outcome: Option<&str>) -> &'static str {
        self.t(match (active, outcome) {
            (true, _) => "in_progress",
            (false, Some("goal")) => "outcome_goal",
            (false, Some("exited")) => "outcome_exited",
            (false, Some("completed")) => "outcome_completed",
            (false, _) => "ended",
        })
    }

    /// A channel's name.
    pub fn channel(&self, channel: &str) -> &'static str {
        self.t(&format!("ch_{channel}"))
    }

    /// A moment, to the minute, in UTC: `30 Nov 2026, 14:05 UTC` / `30 nov. 2026, 14:05 UTC`.
    pub fn date(&self, ms: Millis) -> String {
        use chrono::{Datelike, Timelike};
        let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
            return String::new();
        };
        let month = t.month0() as usize;
        let name = match self.lang {
            Lang::En => MONTHS_EN[month],
            Lang::Fr => MONTHS_FR[month],
        };
        format!(
            "{} {name} {}, {:02}:{:02} UTC",
            t.day(),
            t.year(),
            t.hour(),
            t.minute()
        )
    }

    /// A number with `places` decimals, grouped as [`Tr::number`] groups: `1,234.50` /
    /// `1 234,50`.
    pub fn decimal(&self, v: f64, places: usize) -> String {
        if !v.is_finite() {
            return String::new();
        }
        let text = format!("{:.places$}", v.abs());
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let mut out = if v < 0.0 && text.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
            "−".to_string()
        } else {
            String::new()
        };
        out.push_str(&self.number(whole.parse().unwrap_or(0)));
        if !fraction.is_empty() {
            out.push(match self.lang {
                Lang::En => '.',
                Lang::Fr => ',',
            });
            out.push_str(fraction);
        }
        out
    }

    /// A ratio as a percentage with one decimal: `62.5%` / `62,5 %`.
    pub fn percent(&self, ratio: f64) -> String {
        let n = self.decimal(ratio * 100.0, 1);
        match self.lang {
            Lang::En => format!("{n}%"),
            Lang::Fr => format!("{n}\u{202f}%"),
        }
    }

    /// A count with the language's thousands separator: `12,345` / `12 345` (a narrow
    /// no-break space, as French typography writes it).
    pub fn number(&self, n: u64) -> String {
        let sep = match self.lang {
            Lang::En => ",",
            Lang::Fr => "\u{202f}",
        };
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(sep);
            }
            out.push(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_has_both_languages_and_keys_are_unique() {
        for (i, (k, en, fr)) in TEXTS.iter().enumerate() {
            assert!(!en.is_empty() && !fr.is_empty(), "{k}");
            assert!(TEXTS[i + 1..].iter().all(|(o, _, _)| o != k), "{k} twice");
        }
        let fr = Tr { lang: Lang::Fr };
        assert_eq!(fr.t("sign_in"), "Se connecter");
        assert_eq!(fr.t("nothing"), "??missing??");
        for c in parcours_core::Channel::ALL {
            assert!(!fr.channel(c.as_str()).starts_with("??"), "{c:?}");
        }
    }

    /// Every key a template or a module names as a literal (`t("key")`) has its strings: a
    /// typo shows as `??missing??` only on the page that uses it.
    #[test]
    fn every_key_in_use_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut missing = Vec::new();
        for folder in ["templates", "src"] {
            for entry in std::fs::read_dir(format!("{dir}{folder}")).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                // `tr.t("key")`, `c.tr.t("key")`: a method call, not `.get("…")`.
                for piece in text.split(".t(\"").skip(1) {
                    let Some(key) = piece.split('"').next() else {
                        continue;
                    };
                    let is_key = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if is_key && key != "nothing" && !TEXTS.iter().any(|(k, _, _)| *k == key) {
                        missing.push(format!("{}: {key}", path.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys without strings: {missing:?}");
    }

    #[test]
    fn decimals_and_percentages_in_each_language() {
        let (en, fr) = (Tr { lang: Lang::En }, Tr { lang: Lang::Fr });
        assert_eq!(en.decimal(1234.5, 2), "1,234.50");
        assert_eq!(fr.decimal(1234.5, 2), "1\u{202f}234,50");
        assert_eq!(en.decimal(-12.26, 1), "−12.3");
        assert_eq!(en.decimal(-0.01, 1), "0.0");
        assert_eq!(en.decimal(f64::NAN, 1), "");
        assert_eq!(en.percent(0.625), "62.5%");
        assert_eq!(fr.percent(0.625), "62,5\u{202f}%");
    }

    #[test]
    fn dates_and_numbers_in_each_language() {
        let (en, fr) = (Tr { lang: Lang::En }, Tr { lang: Lang::Fr });
        // 2026-11-30T14:05:00Z
        let t = 1_796_047_500_000;
        assert_eq!(en.date(t), "30 Nov 2026, 14:05 UTC");
        assert_eq!(fr.date(t), "30 nov. 2026, 14:05 UTC");
        assert_eq!(en.number(1_234_567), "1,234,567");
        assert_eq!(fr.number(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(en.number(999), "999");
        assert_eq!(Lang::from_accept("fr-FR,fr;q=0.9,en;q=0.8"), Lang::Fr);
        assert_eq!(Lang::from_accept("de-DE,en;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept(""), Lang::En);
    }
}
