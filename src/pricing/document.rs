//! Reading the price out of the Price List's product documents, pure.
//!
//! `GetProducts` answers each product as a JSON document in a string: its `product`
//! (attributes) and its `terms`, of which `OnDemand` holds one or more offers, each with
//! one or more price dimensions, each with a `pricePerUnit` by currency
//! (`{"USD": "1.0060000000"}`), the amount itself a string.

use serde_json::Value;

/// What made a price-list document unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("price list document {index}: {what}")]
pub struct Malformed {
    /// Which document of the answer, from 1.
    pub index: usize,
    pub what: String,
}

/// The hourly on-demand price in USD that the documents give, or `None` when none of them
/// has one (no `OnDemand` terms, or prices in other currencies only).
pub fn hourly_usd(documents: &[String]) -> Result<Option<f64>, Malformed> {
    usd_per(documents, HOURS)
}

/// The price list's unit of machine time.
const HOURS: &str = "Hrs";
/// The price list's unit of EBS storage: a gigabyte (GiB, in fact) for a month.
pub const GB_MONTHS: &str = "GB-Mo";

/// The on-demand price in USD per `unit` that the documents give, or `None` when none of
/// them has one.
///
/// Several documents or dimensions may match one query (a license model, an operation the
/// filters do not tell apart, a volume type's tiers): the highest price is taken, so that
/// a budget errs on the side of refusing. Dimensions priced in another unit (an upfront
/// fee, IOPS) are passed over.
pub fn usd_per(documents: &[String], unit: &str) -> Result<Option<f64>, Malformed> {
    let mut highest: Option<f64> = None;
    for (i, text) in documents.iter().enumerate() {
        let malformed = |what: String| Malformed { index: i + 1, what };
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("is not JSON ({e})")))?;
        let terms = doc
            .get("terms")
            .ok_or_else(|| malformed("has no terms".into()))?;
        let Some(on_demand) = terms.get("OnDemand") else {
            continue;
        };
        let offers = on_demand
            .as_object()
            .ok_or_else(|| malformed("terms.OnDemand is not an object".into()))?;
        for (offer, term) in offers {
            let dimensions = term
                .get("priceDimensions")
                .and_then(Value::as_object)
                .ok_or_else(|| malformed(format!("offer {offer} has no priceDimensions")))?;
            for (name, dimension) in dimensions {
                if let Some(price) = dimension_usd(dimension, unit).map_err(|what| {
                    malformed(format!("dimension {name} of offer {offer}: {what}"))
                })? {
                    highest = Some(highest.map_or(price, |h| h.max(price)));
                }
            }
        }
    }
    Ok(highest)
}

/// One dimension's USD price per `unit`: `None` when it has none in USD or is priced by
/// another unit.
fn dimension_usd(dimension: &Value, unit: &str) -> Result<Option<f64>, String> {
    if let Some(its) = dimension.get("unit").and_then(Value::as_str)
        && !its.eq_ignore_ascii_case(unit)
    {
        return Ok(None);
    }
    let per_unit = dimension
        .get("pricePerUnit")
        .ok_or("no pricePerUnit")?
        .as_object()
        .ok_or("pricePerUnit is not an object")?;
    let Some(usd) = per_unit.get("USD") else {
        return Ok(None);
    };
    let text = usd
        .as_str()
        .ok_or_else(|| format!("pricePerUnit.USD is not a string: {usd}"))?;
    match text.trim().parse::<f64>() {
        Ok(price) if price.is_finite() && price >= 0.0 => Ok(Some(price)),
        _ => Err(format!("pricePerUnit.USD is not a price: {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product document in the shape `GetProducts` answers for g5.xlarge in us-east-1
    /// (Linux, shared tenancy, no pre-installed software, used capacity), with `terms`
    /// given.
    fn g5_xlarge(terms: &str) -> String {
        format!(
            r#"{{"product":{{"productFamily":"Compute Instance","attributes":{{
            "instanceType":"g5.xlarge","regionCode":"us-east-1","location":"US East (N. Virginia)",
            "operatingSystem":"Linux","tenancy":"Shared","preInstalledSw":"NA",
            "capacitystatus":"Used","licenseModel":"No License required",
            "usagetype":"BoxUsage:g5.xlarge","operation":"RunInstances","vcpu":"4",
            "memory":"16 GiB","gpu":"1","servicecode":"AmazonEC2"}},"sku":"6EXQ4TDF4G5FKNGE"}},
            "serviceCode":"AmazonEC2","terms":{terms},
            "version":"20261120224015","publicationDate":"2026-11-20T22:40:15Z"}}"#
        )
    }

    fn dimension(rate: &str, unit: &str, per_unit: &str) -> String {
        format!(
            r#""{rate}":{{"unit":"{unit}","endRange":"Inf","description":"$1.006 per On Demand Linux g5.xlarge Instance Hour",
            "appliesTo":[],"rateCode":"{rate}",
            "beginRange":"0","pricePerUnit":{per_unit}}}"#
        )
    }

    fn offer(code: &str, dimensions: &[String]) -> String {
        format!(
            r#""6EXQ4TDF4G5FKNGE.{code}":{{"priceDimensions":{{{}}},"sku":"6EXQ4TDF4G5FKNGE",
            "effectiveDate":"2026-11-01T00:00:00Z","offerTermCode":"{code}","termAttributes":{{}}}}"#,
            dimensions.join(",")
        )
    }

    fn on_demand(offers: &[String]) -> String {
        format!(r#"{{"OnDemand":{{{}}}}}"#, offers.join(","))
    }

    const HOURLY: &str = r#"{"USD":"1.0060000000"}"#;

    #[test]
    fn the_price_is_read_from_a_real_shaped_document() {
        let doc = g5_xlarge(&on_demand(&[offer(
            "JRTCKXETXF",
            &[dimension(
                "6EXQ4TDF4G5FKNGE.JRTCKXETXF.6YS6EN2CT7",
                "Hrs",
                HOURLY,
            )],
        )]));
        assert_eq!(hourly_usd(&[doc]), Ok(Some(1.006)));
    }

    #[test]
    fn of_several_terms_and_dimensions_the_highest_hourly_price_is_taken() {
        let first = g5_xlarge(&on_demand(&[
            offer(
                "JRTCKXETXF",
                &[
                    dimension("a", "Hrs", r#"{"USD":"1.0060000000"}"#),
                    // An upfront or per-unit fee is not an hourly price, however large.
                    dimension("b", "Quantity", r#"{"USD":"5000.0000000000"}"#),
                ],
            ),
            offer(
                "ABCDEFGHIJ",
                &[dimension("c", "Hrs", r#"{"USD":"0.9000000000"}"#)],
            ),
        ]));
        let reserved_only = g5_xlarge(r#"{"Reserved":{}}"#);
        let second = g5_xlarge(&on_demand(&[offer(
            "KLMNOPQRST",
            &[dimension("d", "Hrs", r#"{"USD":"1.2120000000"}"#)],
        )]));
        assert_eq!(hourly_usd(&[first, reserved_only, second]), Ok(Some(1.212)));
    }

    #[test]
    fn a_volume_types_price_is_read_per_gb_month() {
        // The shape GetProducts answers for gp3 storage in us-east-1 (productFamily
        // Storage), where the hourly reader finds no price.
        let gp3 = r#"{"product":{"productFamily":"Storage","attributes":{
            "volumeApiName":"gp3","regionCode":"us-east-1","storageMedia":"SSD-backed",
            "volumeType":"General Purpose","usagetype":"EBS:VolumeUsage.gp3",
            "servicecode":"AmazonEC2"},"sku":"7U7TWP44UP36AT3R"},"serviceCode":"AmazonEC2",
            "terms":{"OnDemand":{"7U7TWP44UP36AT3R.JRTCKXETXF":{"priceDimensions":{
            "7U7TWP44UP36AT3R.JRTCKXETXF.6YS6EN2CT7":{"unit":"GB-Mo","endRange":"Inf",
            "description":"$0.08 per GB-month of General Purpose (gp3) provisioned storage - US East (N. Virginia)",
            "appliesTo":[],"rateCode":"7U7TWP44UP36AT3R.JRTCKXETXF.6YS6EN2CT7","beginRange":"0",
            "pricePerUnit":{"USD":"0.0800000000"}}},"sku":"7U7TWP44UP36AT3R",
            "effectiveDate":"2026-11-01T00:00:00Z","offerTermCode":"JRTCKXETXF",
            "termAttributes":{}}}},"version":"20261120224015"}"#;
        let docs = [gp3.to_owned()];
        assert_eq!(usd_per(&docs, GB_MONTHS), Ok(Some(0.08)));
        assert_eq!(hourly_usd(&docs), Ok(None));
    }

    #[test]
    fn no_usd_price_is_no_price_and_never_zero() {
        let cny = g5_xlarge(&on_demand(&[offer(
            "JRTCKXETXF",
            &[dimension("a", "Hrs", r#"{"CNY":"7.9300000000"}"#)],
        )]));
        assert_eq!(hourly_usd(std::slice::from_ref(&cny)), Ok(None));
        assert_eq!(hourly_usd(&[g5_xlarge(r#"{"Reserved":{}}"#)]), Ok(None));
        assert_eq!(hourly_usd(&[]), Ok(None));
        // A document in USD beside it still gives its price.
        let usd = g5_xlarge(&on_demand(&[offer("X", &[dimension("b", "Hrs", HOURLY)])]));
        assert_eq!(hourly_usd(&[cny, usd]), Ok(Some(1.006)));
    }

    #[test]
    fn a_malformed_document_is_an_error_that_names_what_and_where() {
        let cases = [
            ("{\"product\":", "price list document 1: is not JSON"),
            (r#"{"product":{}}"#, "price list document 1: has no terms"),
            (
                r#"{"terms":{"OnDemand":[]}}"#,
                "terms.OnDemand is not an object",
            ),
            (
                r#"{"terms":{"OnDemand":{"X.Y":{"sku":"X"}}}}"#,
                "offer X.Y has no priceDimensions",
            ),
        ];
        for (doc, words) in cases {
            let err = hourly_usd(&[doc.to_owned()]).unwrap_err().to_string();
            assert!(err.contains(words), "{doc}: {err}");
        }
        for (per_unit, words) in [
            (
                r#"{"USD":"about a dollar"}"#,
                "pricePerUnit.USD is not a price: \"about a dollar\"",
            ),
            (
                r#"{"USD":1.006}"#,
                "pricePerUnit.USD is not a string: 1.006",
            ),
            (r#"{"USD":"-1"}"#, "is not a price"),
            (r#""1.006""#, "pricePerUnit is not an object"),
        ] {
            let good = g5_xlarge(&on_demand(&[offer("A", &[dimension("a", "Hrs", HOURLY)])]));
            let bad = g5_xlarge(&on_demand(&[offer(
                "B",
                &[dimension("b", "Hrs", per_unit)],
            )]));
            let err = hourly_usd(&[good, bad]).unwrap_err();
            assert_eq!(err.index, 2, "{per_unit}");
            let text = err.to_string();
            assert!(
                text.contains(words) && text.contains("dimension b of offer 6EXQ4TDF4G5FKNGE.B"),
                "{per_unit}: {text}"
            );
        }
    }
}
