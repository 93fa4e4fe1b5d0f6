//! The AWS Price List Query API as it answers `GetProducts`, for what moto has no backend
//! for. The JSON 1.1 protocol (POST `/`, `X-Amz-Target: AWSPriceListService.GetProducts`,
//! `application/x-amz-json-1.1`, SigV4 for the service `pricing`); the request held to
//! the published model (`ServiceCode` required; each filter's `Type`, `Field` and `Value`
//! required, `Type` `TERM_MATCH`; `MaxResults` 1 to 100; `FormatVersion` `aws_v1`), a
//! fault answered as the service does (`{"__type": …, "Message": …}`); and the answer in
//! its real shape: `PriceList`, an array of JSON *strings*, each a product document with
//! its attributes and `terms.OnDemand`, paginated with `NextToken`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A fake Price List Query API holding a catalog of EC2 products.
pub struct PriceList {
    pub server: MockServer,
    catalog: Arc<Mutex<Catalog>>,
}

#[derive(Default)]
struct Catalog {
    products: Vec<Value>,
    /// Products per page when the request asks for more (or none).
    page: Option<usize>,
    /// The credential scope of each `GetProducts`: (region, service).
    scopes: Vec<(String, String)>,
}

impl PriceList {
    pub async fn start() -> PriceList {
        let server = MockServer::start().await;
        let catalog = Arc::new(Mutex::new(Catalog::default()));
        Mock::given(method("POST"))
            .and(path("/"))
            .respond_with(GetProducts {
                catalog: catalog.clone(),
            })
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        PriceList { server, catalog }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Lists `instance_type` in `region` at `usd` an hour on demand (Linux, shared tenancy,
    /// no pre-installed software, used capacity) as the real price list writes it, beside
    /// the products of the same type and region that the query must not find: Windows,
    /// dedicated tenancy, SQL Server pre-installed (all dearer), and capacity reservations.
    pub fn pricing_offer(&self, instance_type: &str, region: &str, usd: f64) {
        let variants: [(&str, &str, &str, &str, f64); 6] = [
            ("Linux", "Shared", "NA", "Used", usd),
            ("Windows", "Shared", "NA", "Used", usd + 0.184),
            ("Linux", "Dedicated", "NA", "Used", usd * 1.1),
            ("Linux", "Shared", "SQL Std", "Used", usd + 0.48),
            ("Linux", "Shared", "NA", "UnusedCapacityReservation", usd),
            ("Linux", "Shared", "NA", "AllocatedCapacityReservation", 0.0),
        ];
        let mut catalog = self.catalog.lock().unwrap();
        for (os, tenancy, software, capacity, price) in variants {
            let n = catalog.products.len();
            catalog.products.push(product_document(
                &format!("SKU{n:013}"),
                instance_type,
                region,
                (os, tenancy, software, capacity),
                price,
            ));
        }
    }

    /// Lists EBS `volume_type` storage in `region` at `usd` a GB-month, as the price list
    /// writes it (product family `Storage`, its dimension in `GB-Mo`), beside the same
    /// type's storage in another region and gp2's in this one, which the query must not find.
    pub fn pricing_storage(&self, volume_type: &str, region: &str, usd: f64) {
        let other = if region == "eu-west-1" {
            "us-east-1"
        } else {
            "eu-west-1"
        };
        let variants = [
            (volume_type, region, usd),
            (volume_type, other, usd * 1.1),
            ("gp2", region, usd * 1.25),
        ];
        let mut catalog = self.catalog.lock().unwrap();
        for (kind, region, price) in variants {
            let n = catalog.products.len();
            catalog.products.push(storage_document(
                &format!("SKU{n:013}"),
                kind,
                region,
                price,
            ));
        }
    }

    /// Answers at most `n` products a page, as the API does when it has more than a page.
    pub fn pricing_page_size(&self, n: usize) {
        self.catalog.lock().unwrap().page = Some(n);
    }

    /// Answers the next `times` requests (`None`: all) with `status` and the fault `code`.
    pub async fn pricing_fail(&self, status: u16, code: &str, times: Option<u64>) {
        let mock = Mock::given(method("POST"))
            .respond_with(fault(
                status,
                code,
                &format!("{code}: injected by the test"),
            ))
            .with_priority(1);
        match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        }
        .mount(&self.server)
        .await;
    }

    /// How many `GetProducts` requests came, failed ones included.
    pub async fn pricing_requests(&self) -> usize {
        let requests = self.server.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| {
                r.headers
                    .get("x-amz-target")
                    .is_some_and(|t| t == "AWSPriceListService.GetProducts")
            })
            .count()
    }

    /// The (region, service) each answered request was signed for.
    pub fn pricing_scopes(&self) -> Vec<(String, String)> {
        self.catalog.lock().unwrap().scopes.clone()
    }
}

/// A product's on-demand terms as the price list writes them: one offer with one price
/// dimension, `usd` per `unit`.
fn on_demand(sku: &str, unit: &str, description: &str, usd: f64) -> Value {
    let offer = format!("{sku}.JRTCKXETXF");
    let rate = format!("{offer}.6YS6EN2CT7");
    json!({offer: {
        "priceDimensions": {rate.clone(): {
            "unit": unit,
            "endRange": "Inf",
            "description": description,
            "appliesTo": [],
            "rateCode": rate,
            "beginRange": "0",
            "pricePerUnit": {"USD": format!("{usd:.10}")}
        }},
        "sku": sku,
        "effectiveDate": "2026-11-01T00:00:00Z",
        "offerTermCode": "JRTCKXETXF",
        "termAttributes": {}
    }})
}

/// A product document in the shape of the real gp3 us-east-1 storage one: the product
/// family `Storage`, its attributes, one on-demand offer priced per GB-month.
fn storage_document(sku: &str, volume_type: &str, region: &str, usd: f64) -> Value {
    json!({
        "product": {
            "productFamily": "Storage",
            "attributes": {
                "volumeApiName": volume_type,
                "regionCode": region,
                "storageMedia": "SSD-backed",
                "volumeType": "General Purpose",
                "maxVolumeSize": "16 TiB",
                "usagetype": format!("EBS:VolumeUsage.{volume_type}"),
                "servicecode": "AmazonEC2",
                "servicename": "Amazon Elastic Compute Cloud"
            },
            "sku": sku
        },
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": on_demand(
            sku,
            "GB-Mo",
            &format!("${usd} per GB-month of {volume_type} provisioned storage"),
            usd
        )},
        "version": "20261120224015",
        "publicationDate": "2026-11-20T22:40:15Z"
    })
}

/// A product document in the shape of the real g5.xlarge us-east-1 one: the product's
/// attributes, its one on-demand offer with one hourly price dimension, a reserved term
/// beside it, and the price list's version.
fn product_document(
    sku: &str,
    instance_type: &str,
    region: &str,
    (os, tenancy, software, capacity): (&str, &str, &str, &str),
    usd: f64,
) -> Value {
    let reserved = format!("{sku}.4NA7Y494T4");
    json!({
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "enhancedNetworkingSupported": "Yes",
                "intelTurboAvailable": "No",
                "memory": "16 GiB",
                "dedicatedEbsThroughput": "Up to 3500 Mbps",
                "vcpu": "4",
                "classicnetworkingsupport": "false",
                "capacitystatus": capacity,
                "locationType": "AWS Region",
                "storage": "1 x 250 NVMe SSD",
                "instanceFamily": "GPU instance",
                "operatingSystem": os,
                "intelAvx2Available": "No",
                "regionCode": region,
                "physicalProcessor": "AMD EPYC 7R32",
                "clockSpeed": "3.3 GHz",
                "ecu": "NA",
                "networkPerformance": "Up to 10 Gigabit",
                "servicename": "Amazon Elastic Compute Cloud",
                "gpuMemory": "24 GiB",
                "vpcnetworkingsupport": "true",
                "instanceType": instance_type,
                "tenancy": tenancy,
                "usagetype": format!("BoxUsage:{instance_type}"),
                "normalizationSizeFactor": "8",
                "intelAvxAvailable": "No",
                "servicecode": "AmazonEC2",
                "licenseModel": "No License required",
                "currentGeneration": "Yes",
                "preInstalledSw": software,
                "location": "US East (N. Virginia)",
                "processorArchitecture": "64-bit",
                "marketoption": "OnDemand",
                "operation": "RunInstances",
                "availabilityzone": "NA",
                "gpu": "1"
            },
            "sku": sku
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": on_demand(
                sku,
                "Hrs",
                &format!("${usd:.3} per On Demand {os} {instance_type} Instance Hour"),
                usd
            ),
            "Reserved": {
                reserved.clone(): {
                    "priceDimensions": {
                        format!("{reserved}.2TG2D8R56U"): {
                            "unit": "Quantity",
                            "description": "Upfront Fee",
                            "appliesTo": [],
                            "rateCode": format!("{reserved}.2TG2D8R56U"),
                            "pricePerUnit": {"USD": "5273.0000000000"}
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "offerTermCode": "4NA7Y494T4",
                    "termAttributes": {
                        "LeaseContractLength": "1yr",
                        "OfferingClass": "standard",
                        "PurchaseOption": "All Upfront"
                    }
                }
            }
        },
        "version": "20261120224015",
        "publicationDate": "2026-11-20T22:40:15Z"
    })
}

/// A fault as the service answers it.
fn fault(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-requestid", "3e1b0c2a-0000-4000-8000-000000000000")
        .set_body_raw(
            json!({"__type": code, "Message": message}).to_string(),
            "application/x-amz-json-1.1",
        )
}

fn invalid(message: &str) -> ResponseTemplate {
    fault(400, "InvalidParameterException", message)
}

/// The region and service of a SigV4 `Authorization` header's credential scope.
fn scope(request: &Request) -> Option<(String, String)> {
    let auth = request.headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts[..] {
        [_, _, region, service, "aws4_request"] => Some((region.to_owned(), service.to_owned())),
        _ => None,
    }
}

struct GetProducts {
    catalog: Arc<Mutex<Catalog>>,
}

impl wiremock::Respond for GetProducts {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let target = request
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if target != "AWSPriceListService.GetProducts" {
            return fault(400, "UnknownOperationException", "");
        }
        let json_1_1 = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-amz-json-1.1"));
        if !json_1_1 {
            return fault(400, "SerializationException", "");
        }
        let Some(scope) = scope(request).filter(|(_, service)| service == "pricing") else {
            return fault(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            );
        };
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return fault(
                400,
                "SerializationException",
                "Start of structure or map found where not expected.",
            );
        };
        let Some(service) = body["ServiceCode"].as_str() else {
            return invalid("Input validation error: ServiceCode is required");
        };
        let mut terms: Vec<(String, String)> = Vec::new();
        for f in body["Filters"].as_array().into_iter().flatten() {
            let (Some(kind), Some(field), Some(value)) =
                (f["Type"].as_str(), f["Field"].as_str(), f["Value"].as_str())
            else {
                return invalid("Input validation error: a filter needs its Type, Field and Value");
            };
            if kind != "TERM_MATCH" {
                return invalid(&format!(
                    "Input validation error: unknown filter type {kind}"
                ));
            }
            terms.push((field.to_owned(), value.to_owned()));
        }
        if let Some(v) = body.get("FormatVersion")
            && v != "aws_v1"
        {
            return invalid("Input validation error: FormatVersion must be aws_v1");
        }
        let asked = match body.get("MaxResults") {
            None => 100,
            Some(n) => match n.as_u64() {
                Some(n @ 1..=100) => n as usize,
                _ => return invalid("Input validation error: MaxResults must be 1 to 100"),
            },
        };
        let from = match body.get("NextToken").and_then(Value::as_str) {
            None => 0,
            Some(t) => match t.strip_prefix("page:").and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => return fault(400, "InvalidNextTokenException", "Invalid NextToken"),
            },
        };
        let mut catalog = self.catalog.lock().unwrap();
        catalog.scopes.push(scope);
        let size = catalog.page.map_or(asked, |p| p.min(asked));
        let matching: Vec<&Value> = catalog
            .products
            .iter()
            .filter(|p| p["serviceCode"] == service)
            .filter(|p| {
                terms.iter().all(|(field, value)| {
                    let have = match field.as_str() {
                        "ServiceCode" => &p["serviceCode"],
                        // A product's family is beside its attributes, and filtered on too.
                        "productFamily" => &p["product"]["productFamily"],
                        _ => &p["product"]["attributes"][field.as_str()],
                    };
                    have == value.as_str()
                })
            })
            .collect();
        let page: Vec<String> = matching
            .iter()
            .skip(from)
            .take(size)
            .map(|p| p.to_string())
            .collect();
        let mut answer = json!({"FormatVersion": "aws_v1", "PriceList": page});
        if from + size < matching.len() {
            answer["NextToken"] = json!(format!("page:{}", from + size));
        }
        ResponseTemplate::new(200)
            .insert_header("x-amzn-requestid", "3e1b0c2a-0000-4000-8000-000000000001")
            .set_body_raw(answer.to_string(), "application/x-amz-json-1.1")
    }
}
